#!/bin/bash
# Runs a Kafka tool class on the broker's classpath: kafka-run-class.sh <main class> [args...]
set -euo pipefail
# shellcheck disable=SC2086  # the *_OPTS variables are lists of JVM flags
exec java ${KAFKA_TOOLS_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties -cp '/opt/kafka/libs/*' "$@"

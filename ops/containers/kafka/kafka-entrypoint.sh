#!/bin/bash
# One Kafka node in KRaft mode (broker and controller in one process), configured by the environment
# the way the official apache/kafka image is: every KAFKA_<NAME> variable becomes the property <name>,
# lower-cased, with "_" read as ".", "__" as "_" and "___" as "-" (KAFKA_ADVERTISED_LISTENERS ->
# advertised.listeners). Unset properties take the defaults below: a single node on :9092 (clients) and
# :9093 (controller), sized for a small machine, advertising localhost:9092.
#   CLUSTER_ID       the KRaft cluster id used to format an empty data directory (a default is set)
#   KAFKA_HEAP_OPTS, KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS   JVM flags (not properties)
# The configuration is written under /tmp (a tmpfs where the root filesystem is read-only); the data
# lives in log.dirs (default /var/lib/kafka/data, mount a volume there to keep it).
set -euo pipefail

not_properties=" KAFKA_HEAP_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_OPTS KAFKA_LOG4J_OPTS KAFKA_JMX_OPTS \
KAFKA_GC_LOG_OPTS KAFKA_DEBUG KAFKA_HOME KAFKA_VERSION KAFKA_TOOLS_HEAP_OPTS "

# shellcheck disable=SC2054  # the commas are inside values
declare -A props=(
  [node.id]=1
  [process.roles]=broker,controller
  [listeners]=PLAINTEXT://:9092,CONTROLLER://:9093
  [advertised.listeners]=PLAINTEXT://localhost:9092
  [controller.listener.names]=CONTROLLER
  [listener.security.protocol.map]=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  [log.dirs]=/var/lib/kafka/data
  [num.network.threads]=2
  [num.io.threads]=2
  [background.threads]=2
  [num.recovery.threads.per.data.dir]=1
  [log.cleaner.threads]=1
  [num.partitions]=1
  [offsets.topic.num.partitions]=8
  [offsets.topic.replication.factor]=1
  [transaction.state.log.num.partitions]=4
  [transaction.state.log.replication.factor]=1
  [transaction.state.log.min.isr]=1
  [share.coordinator.state.topic.replication.factor]=1
  [share.coordinator.state.topic.min.isr]=1
  [auto.create.topics.enable]=false
  [group.initial.rebalance.delay.ms]=0
)

for name in $(compgen -e); do
  [[ "$name" == KAFKA_* ]] || continue
  [[ "$not_properties" == *" $name "* ]] && continue
  key="${name#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/$'\x01'}"
  key="${key//_/.}"
  key="${key//$'\x01'/_}"
  props[$key]="${!name}"
done
if [ -z "${KAFKA_CONTROLLER_QUORUM_VOTERS:-}" ] && [ -z "${KAFKA_CONTROLLER_QUORUM_BOOTSTRAP_SERVERS:-}" ]; then
  props[controller.quorum.voters]="${props[node.id]}@localhost:9093"
fi

config_dir=/tmp/kafka
mkdir -p "$config_dir" "${props[log.dirs]%%,*}"
config="$config_dir/server.properties"
for key in "${!props[@]}"; do printf '%s=%s\n' "$key" "${props[$key]}"; done | sort >"$config"

# shellcheck disable=SC2206  # the *_OPTS variables are lists of JVM flags, split on purpose
java_cmd=(java ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
  ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseSerialGC -XX:CICompilerCount=2 -XX:+ExitOnOutOfMemoryError}
  -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties
  ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*')

if [ ! -f "${props[log.dirs]%%,*}/meta.properties" ]; then
  "${java_cmd[@]}" -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties \
    kafka.tools.StorageTool format -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$config" --ignore-formatted
fi
exec "${java_cmd[@]}" kafka.Kafka "$config"

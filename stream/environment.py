"""The configuration contract (docs/contracts.md §2): every STREAM_* and ZENDESK_* variable the service
reads, with its meaning, and the check that turns a typo into one clear line. Light on purpose: the
command checks the environment before it imports anything heavy."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from stream.errors import ConfigError

# The configuration contract (docs/contracts.md §2): every variable the service reads by name.
# Other `KAFKA_*` variables are passed to librdkafka (see stream.kafka.config).
ENVIRONMENT: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "brokers (default localhost:9092)",
    "STREAM_TOPIC": "input topic (default segment.events)",
    "STREAM_GROUP_ID": "consumer group (default zendesk-stream)",
    "STREAM_RETRY_TOPIC": "retry topic (default <input>.<group>.retry)",
    "STREAM_DLQ_TOPIC": "dead-letter topic (default <input>.<group>.dlq)",
    "STREAM_INPUT_FORMAT": "json (default), avro, or auto (Avro when the Confluent magic byte leads)",
    "SCHEMA_REGISTRY_URL": "Confluent-compatible schema registry for Avro; unset: topics/schemas/*.avsc",
    "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "the registry's HTTP basic auth, user:password (optional)",
    "ZENDESK_SUBDOMAIN": "account subdomain (required; letters, digits, hyphens)",
    "ZENDESK_BASE_URL": "override of https://<subdomain>.zendesk.com (https, or http on loopback)",
    "ZENDESK_OAUTH_CLIENT_ID": "OAuth client credentials (recommended): the OAuth client's identifier",
    "ZENDESK_OAUTH_CLIENT_SECRET": "OAuth client credentials: the client's secret",
    "ZENDESK_OAUTH_SCOPES": "OAuth client credentials: the scopes to ask for (default 'read write')",
    "ZENDESK_OAUTH_TOKEN_TTL_S": "OAuth: access-token lifetime to ask for, seconds (default: Zendesk's)",
    "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": "OAuth refresh-token mode, one replica only: file with the token",
    "ZENDESK_OAUTH_TOKEN": "a static OAuth bearer token (not renewed)",
    "ZENDESK_EMAIL": "API-token auth (retired by Zendesk on 2027-04-30): the agent's email",
    "ZENDESK_API_TOKEN": "API-token auth (retired by Zendesk on 2027-04-30): the token",
    "ZENDESK_SETTINGS": "destination settings: inline JSON or a path to a JSON file (default {})",
    "ZENDESK_PLAN": "the account's plan: its rate limits until Zendesk's headers tell (enterprise)",
    "ZENDESK_RATE_BUDGET": "share of the account's limits to use (0.6) or requests per minute (400rpm); 1.0",
    "STREAM_MAX_IN_FLIGHT": "events started and not yet committed, across keys (default 3000)",
    "STREAM_BULK": "auto (one request while light and a token is free, else jobs; default), always, off",
    "STREAM_BULK_LINGER_MS": "the longest a bulk batch waits to fill, in milliseconds (default 250)",
    "STREAM_COALESCE": "merge consecutive identifies of one user waiting in its lane (default true)",
    "STREAM_UNCHANGED_TTL_S": "remember writes this long to skip ones that change nothing; 0: off (3600)",
    "STREAM_DEDUP_WINDOW": "remember delivered track events this long, never to post one twice; 0: off (7d)",
    "STREAM_DELIVERED_TOPIC": "their markers, a compacted topic (default <input>.<group>.delivered)",
    "STREAM_MAX_BUFFERED_PER_PARTITION": "records held per partition before it is paused (default 3000)",
    "STREAM_COMMIT_INTERVAL_S": "least seconds between two commits; commits follow finished work (0.01)",
    "STREAM_RETRY_ATTEMPTS": "in-place attempts for transient failures, the first included (default 5)",
    "STREAM_RETRY_ROUNDS": "attempts in the retry path before dead-lettering (default 5)",
    "STREAM_RETRY_DELAY_S": "wait before the first retry-path attempt, tripled each round (default 30)",
    "STREAM_BREAKER_WINDOW": "recent events the circuit breaker looks at (default 200)",
    "STREAM_BREAKER_THRESHOLD": "share of them dead-lettered (not invalid) that stops the service (0.8)",
    "STREAM_SHUTDOWN_DEADLINE_S": "seconds in-flight work may take to finish at shutdown (default 30)",
    "STREAM_GROUP_PROTOCOL": "classic (cooperative-sticky, default) or consumer (KIP-848)",
    "STREAM_GROUP_INSTANCE_ID": "static group membership id (optional)",
    "STREAM_LOG_LEVEL": "debug, info (default), warning, error",
    "STREAM_LOG_FORMAT": "json (default when not a terminal) or console",
    "STREAM_LOG_PII": "log emails and record keys as they are (default false: hashed, sha256:<12 hex>)",
    "STREAM_METRICS_PORT": "port of /metrics, /healthz and /readyz (default 9464); 0 turns the server off",
}


def check_environment(env: Mapping[str, str]) -> None:
    """An unknown STREAM_* or ZENDESK_* variable is a typo until proven otherwise: say which, with the
    nearest known name (docs/contracts.md §2). Unknown KAFKA_* ones are checked in stream.kafka.config."""
    for name in sorted(env):
        if name.startswith(("STREAM_", "ZENDESK_")) and name not in ENVIRONMENT:
            close = difflib.get_close_matches(name, ENVIRONMENT, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{name}: unknown setting{hint}; README.md lists the settings")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def parse_flag(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    """A true/false setting (true, 1, yes, on / false, 0, no, off; blank: the default)."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")

"""Service configuration from the environment (docs/contracts.md §2), validated once at start-up.

Every problem is a `ConfigError` with one line naming the setting; `stream.cli` prints it and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from stream.decoding import InputFormat, InputSettings
from stream.delivery import DeliveryOptions
from stream.durations import EXAMPLES, duration_s
from stream.engine.backpressure import BackPressure
from stream.engine.breaker import CircuitBreaker
from stream.engine.delivered import DEFAULT_WINDOW_S
from stream.engine.options import EngineOptions, Topics
from stream.engine.retry import RetryPolicy
from stream.environment import parse_flag
from stream.errors import ConfigError
from stream.kafka.config import KafkaSettings, kafka_settings_from_env
from stream.kafka.consumer import ConsumerOptions
from stream.mapping.settings import DestinationSettings
from stream.secret import Secret
from stream.zendesk.connection import OAuthSettings, ZendeskConnection, connection_from
from stream.zendesk.governor import DEFAULT_PLAN, PLANS, Budget, Governor

MAX_WINDOW_S = 90 * 86_400.0


@dataclass(frozen=True, kw_only=True)
class Config:
    kafka: KafkaSettings
    zendesk: ZendeskConnection
    destination: DestinationSettings
    plan: str = DEFAULT_PLAN
    budget: Budget = field(default_factory=Budget)
    dedup_window_s: float = DEFAULT_WINDOW_S  # 0: delivered events are not remembered
    input: InputSettings = field(default_factory=InputSettings)

    def governor(self) -> Governor:
        return Governor(plan=self.plan, budget=self.budget)

    @property
    def topics(self) -> Topics:
        kafka = self.kafka
        return Topics(
            input=kafka.input_topic,
            retry=kafka.retry_topic,
            dlq=kafka.dlq_topic,
            group=kafka.group_id,
            delivered=kafka.delivered_topic if self.dedup_window_s > 0 else None,
            starts_at_end=kafka.chosen("auto.offset.reset") in {"latest", "largest", "end"},
        )


def load_destination_settings(raw: str) -> DestinationSettings:
    """`ZENDESK_SETTINGS` is inline JSON or the path of a JSON file. Text that reads as JSON (or starts
    like it) is inline: `["events"]` is a settings value that is not an object, not a file name."""
    text = raw.strip()
    if text and not _looks_like_json(text):
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(f"ZENDESK_SETTINGS: cannot read {path} ({err.strerror})") from None
    return DestinationSettings.parse(text or "{}")


def _looks_like_json(text: str) -> bool:
    if text[0] in '{["':
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def load_config(env: Mapping[str, str]) -> Config:
    destination = load_destination_settings(env.get("ZENDESK_SETTINGS", ""))
    zendesk = load_zendesk_connection(env, destination)
    plan, budget = load_rate_limits(env)
    return Config(
        kafka=kafka_settings_from_env(env),
        zendesk=zendesk,
        destination=destination,
        plan=plan,
        budget=budget,
        dedup_window_s=dedup_window_from_env(env),
        input=input_settings_from_env(env),
    )


def input_settings_from_env(env: Mapping[str, str]) -> InputSettings:
    """STREAM_INPUT_FORMAT, SCHEMA_REGISTRY_URL and SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO."""
    raw = env.get("STREAM_INPUT_FORMAT", "").strip().lower() or InputFormat.JSON.value
    try:
        input_format = InputFormat(raw)
    except ValueError:
        raise ConfigError(f"STREAM_INPUT_FORMAT: expected json, avro or auto, got {raw!r}") from None
    url = env.get("SCHEMA_REGISTRY_URL", "").strip() or None
    user_info = env.get("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "").strip() or None
    if url is not None:
        _check_registry_url(url)
    if user_info is not None:
        if url is None:
            raise ConfigError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: set, but SCHEMA_REGISTRY_URL is not")
        user, colon, _ = user_info.partition(":")
        if not colon or not user:
            raise ConfigError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: expected user:password")
    return InputSettings(
        input_format=input_format,
        registry_url=url.rstrip("/") if url else None,
        registry_user_info=Secret(user_info) if user_info else None,
    )


def _check_registry_url(url: str) -> None:
    if "," in url:
        raise ConfigError(f"SCHEMA_REGISTRY_URL: one registry URL, got a list {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 — raises ValueError for a port that is not a number
    except ValueError as err:
        raise ConfigError(f"SCHEMA_REGISTRY_URL: not a URL ({err})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"SCHEMA_REGISTRY_URL: expected http(s)://host[:port][/path], got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            "SCHEMA_REGISTRY_URL: credentials in the URL; give them in SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"SCHEMA_REGISTRY_URL: the registry's URL without a query or fragment, got {url!r}")


DEFAULT_METRICS_PORT = 9464


def metrics_port_from_env(env: Mapping[str, str]) -> int | None:
    """STREAM_METRICS_PORT: the port of /metrics, /healthz and /readyz; None when 0 turns them off."""
    raw = env.get("STREAM_METRICS_PORT", "").strip()
    if not raw:
        return DEFAULT_METRICS_PORT
    if not raw.isdigit() or int(raw) > 65_535:
        raise ConfigError(
            f"STREAM_METRICS_PORT: expected a port number from 1 to 65535, or 0 to turn the server off, "
            f"got {raw!r}"
        )
    return int(raw) or None


def dedup_window_from_env(env: Mapping[str, str]) -> float:
    """STREAM_DEDUP_WINDOW: a duration (`7d`, `36h`, seconds as a number), or 0 to turn dedup off."""
    raw = env.get("STREAM_DEDUP_WINDOW", "").strip()
    if not raw:
        return DEFAULT_WINDOW_S
    seconds = duration_s(raw)
    if seconds is None:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
    if not 0 <= seconds <= MAX_WINDOW_S:
        raise ConfigError(
            f"STREAM_DEDUP_WINDOW: expected a duration ({EXAMPLES}) of at most 90d, or 0 to turn it off, "
            f"got {raw!r}"
        )
    return seconds


def load_rate_limits(env: Mapping[str, str]) -> tuple[str, Budget]:
    plan = env.get("ZENDESK_PLAN", "").strip().lower().replace("-", "_") or DEFAULT_PLAN
    if plan not in PLANS:
        raise ConfigError(f"ZENDESK_PLAN: {plan!r} is not one of {', '.join(PLANS)}")
    return plan, Budget.parse(env.get("ZENDESK_RATE_BUDGET", ""))


def load_zendesk_connection(env: Mapping[str, str], destination: DestinationSettings) -> ZendeskConnection:
    """The ZENDESK_* connection settings; the subdomain may come from ZENDESK_SETTINGS instead."""
    subdomain = env.get("ZENDESK_SUBDOMAIN", "").strip() or destination.subdomain
    if destination.subdomain and subdomain and destination.subdomain.lower() != subdomain.lower():
        raise ConfigError(
            f"ZENDESK_SUBDOMAIN: {subdomain!r} differs from the subdomain in ZENDESK_SETTINGS "
            f"({destination.subdomain!r}); set one, or make them agree"
        )
    return connection_from(
        subdomain,
        env.get("ZENDESK_BASE_URL"),
        env.get("ZENDESK_EMAIL"),
        env.get("ZENDESK_API_TOKEN"),
        env.get("ZENDESK_OAUTH_TOKEN"),
        oauth=OAuthSettings(
            client_id=env.get("ZENDESK_OAUTH_CLIENT_ID"),
            client_secret=env.get("ZENDESK_OAUTH_CLIENT_SECRET"),
            scopes=env.get("ZENDESK_OAUTH_SCOPES"),
            token_ttl_s=env.get("ZENDESK_OAUTH_TOKEN_TTL_S"),
            refresh_token_file=env.get("ZENDESK_OAUTH_REFRESH_TOKEN_FILE"),
        ),
    )


def zendesk_credentials_given(env: Mapping[str, str]) -> bool:
    """Whether any Zendesk credential variable is set (blank counts as unset)."""
    names = (
        "ZENDESK_EMAIL",
        "ZENDESK_API_TOKEN",
        "ZENDESK_OAUTH_TOKEN",
        "ZENDESK_OAUTH_CLIENT_ID",
        "ZENDESK_OAUTH_CLIENT_SECRET",
        "ZENDESK_OAUTH_REFRESH_TOKEN_FILE",
    )
    return any(env.get(name, "").strip() for name in names)


def engine_options_from_env(env: Mapping[str, str]) -> EngineOptions:
    defaults = EngineOptions()
    retry, breaker, pressure = defaults.retry, defaults.breaker, defaults.back_pressure
    buffered = _number(env, "STREAM_MAX_BUFFERED_PER_PARTITION", pressure.per_partition, 1)
    return EngineOptions(
        max_in_flight=_number(env, "STREAM_MAX_IN_FLIGHT", defaults.max_in_flight, 1),
        commit_interval_s=_seconds(env, "STREAM_COMMIT_INTERVAL_S", defaults.commit_interval_s, 60),
        shutdown_deadline_s=_seconds(env, "STREAM_SHUTDOWN_DEADLINE_S", defaults.shutdown_deadline_s, 3600),
        dedup_window_s=dedup_window_from_env(env),
        retry=RetryPolicy(
            attempts=_number(env, "STREAM_RETRY_ATTEMPTS", retry.attempts, 1, 100),
            rounds=_number(env, "STREAM_RETRY_ROUNDS", retry.rounds, 1, 100),
            delay_s=_seconds(env, "STREAM_RETRY_DELAY_S", retry.delay_s, retry.delay_max_s),
        ),
        breaker=CircuitBreaker(
            window=_number(env, "STREAM_BREAKER_WINDOW", breaker.window, 1),
            threshold=_share(env, "STREAM_BREAKER_THRESHOLD", breaker.threshold),
        ),
        back_pressure=BackPressure(per_partition=buffered, total=max(pressure.total, buffered)),
    )


def delivery_options_from_env(env: Mapping[str, str]) -> DeliveryOptions:
    defaults = DeliveryOptions()
    linger_ms = _number(env, "STREAM_BULK_LINGER_MS", int(defaults.bulk_linger_s * 1000), 1, 60_000)
    bulk = env.get("STREAM_BULK", defaults.bulk).strip().lower()
    if bulk not in {"auto", "always", "off"}:
        raise ConfigError(f"STREAM_BULK: expected auto, always or off, got {bulk!r}")
    raw_ttl = env.get("STREAM_UNCHANGED_TTL_S", "").strip()
    ttl = (
        0.0
        if raw_ttl == "0"
        else _seconds(env, "STREAM_UNCHANGED_TTL_S", defaults.unchanged_ttl_s, 7 * 86_400)
    )
    return DeliveryOptions(
        bulk=bulk,
        bulk_linger_s=linger_ms / 1000,
        coalesce=_flag(env, "STREAM_COALESCE", defaults.coalesce),
        unchanged_ttl_s=ttl,
    )


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    return parse_flag(env, name, default=default)


def consumer_options_from_env(env: Mapping[str, str]) -> ConsumerOptions:
    protocol = env.get("STREAM_GROUP_PROTOCOL", "classic").strip().lower()
    if protocol not in {"classic", "consumer"}:
        raise ConfigError(f"STREAM_GROUP_PROTOCOL: {protocol!r} is not 'classic' or 'consumer'")
    return ConsumerOptions(
        group_protocol=protocol,
        group_instance_id=env.get("STREAM_GROUP_INSTANCE_ID", "").strip() or None,
    )


def _number(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int = 1_000_000) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise ConfigError(f"{name}: expected a whole number from {minimum} to {maximum:,}, got {raw!r}")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float, maximum: float = 86_400) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= maximum:
        raise ConfigError(f"{name}: expected seconds, more than 0 and at most {maximum:g}, got {raw!r}")
    return value


def _share(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise ConfigError(f"{name}: expected a share between 0 and 1, got {raw!r}")
    return value

"""Every metric the service exports, defined once, and the server of `/metrics`, `/healthz`, `/readyz`.

    port           STREAM_METRICS_PORT (default 9464, every interface); 0: no server at all
    /metrics       Prometheus text format
    /healthz       liveness, /readyz readiness: `stream.health` (200 or 503, a small JSON body)

Where the numbers come from, so that none of the parts imports Prometheus:
- counters of records (`events_total`, `events_consumed_total`, `records_produced_total`): the engine's
  observer port (`stream.engine.ports.Observer`), implemented here by `ServiceObserver`;
- requests (`zendesk_requests_total`, `zendesk_request_seconds`): the Zendesk client's one `_send` (and
  its OAuth token request), through its `on_request` hook; bulk job durations through `Bulk`'s
  `on_job_done`;
- everything else (gauges, the governor's waits and 429s): a `Sample` taken on the event loop every
  second by `Sampler` (the end offsets every 5 s, by a reader of their own on a worker thread), which
  the scrape reads. Gauges are therefore at most a second old (end offsets and lag five).

No label takes a user id, an email or any other unbounded value: `type` is identify, track, group,
other or unknown; `endpoint` is the request's path template (`/api/v2/users/{id}`); `bucket` is the
governor's bucket family (`account`, `events`, `create-update-user`, `user`, `organization`,
`inflight-jobs`), never a keyed bucket's key; `topic` and `partition` are those this member owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from stream.engine.ports import Partition, RecordLabel
from stream.engine.runner import EngineSnapshot
from stream.errors import ConfigError
from stream.health import Health, Verdict
from stream.zendesk.governor import GovernorSnapshot

log = structlog.get_logger("stream.metrics")

DEFAULT_PORT: Final = 9464
SAMPLE_INTERVAL_S: Final = 1.0
END_OFFSETS_INTERVAL_S: Final = 5.0
REQUEST_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS_S: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_TYPES: Final = frozenset({"identify", "track", "group", "other", "unknown"})
# The governor's bucket families, shown at 0 before their first wait or 429 (rate() needs a start).
_ZERO_BY_FAMILY: Final = dict.fromkeys(
    ("account", "events", "create-update-user", "user", "organization", "inflight-jobs"), 0
)


@dataclass(frozen=True, slots=True)
class Sample:
    """The gauges' sources, taken together on the event loop."""

    engine: EngineSnapshot | None = None
    governor: GovernorSnapshot | None = None
    bulk_jobs_in_flight: int | None = None  # None: bulk is off
    token_expires_in_s: float | None = None  # None: not an OAuth mode, or no token yet
    taken_at_unix_s: float = 0.0  # when the sample was taken (wall clock)
    ends: Mapping[Partition, int] = field(default_factory=dict)
    caches: Mapping[str, int] = field(default_factory=dict)  # the destination's caches, entries each


class Metrics:
    """The service's metrics, in a registry of their own (tests make as many as they like)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, health: Health | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.health = health or Health()
        self.sample = Sample()  # replaced whole by the sampler
        r = self.registry
        self.events = Counter(
            "zendesk_stream_events_total",
            "Records that reached an end, by event type, outcome (delivered, skipped, dead_lettered, "
            "retry_scheduled, parked) and reason (none for delivered)",
            ["type", "outcome", "reason"],
            registry=r,
        )
        self.consumed = Counter(
            "zendesk_stream_events_consumed_total",
            "Records read from Kafka, by topic (the input topic, and the retry topic)",
            ["topic"],
            registry=r,
        )
        self.produced = Counter(
            "zendesk_stream_records_produced_total",
            "Records the broker confirmed, by kind (retry, dead_letter, delivered_marker) and reason",
            ["kind", "reason"],
            registry=r,
        )
        self.requests = Counter(
            "zendesk_stream_zendesk_requests_total",
            "Requests sent to Zendesk, by path template and status (or why there was no answer)",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "zendesk_stream_zendesk_request_seconds",
            "Time from sending a request to Zendesk to its answer (waits for the governor excluded)",
            ["endpoint"],
            buckets=REQUEST_BUCKETS_S,
            registry=r,
        )
        self.bulk_job_seconds = Histogram(
            "zendesk_stream_bulk_job_seconds",
            "Bulk jobs, from their post to the poll that saw them end",
            buckets=JOB_BUCKETS_S,
            registry=r,
        )
        r.register(_Sampled(self))
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)

    # --- hooks (called on the event loop) ---------------------------------------------------------

    def request(self, endpoint: str, status: str, seconds: float) -> None:
        self.requests.labels(endpoint, status).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def job_done(self, seconds: float) -> None:
        self.bulk_job_seconds.observe(seconds)

    def lag(self) -> int | None:
        """The owned partitions' lag as last sampled (None before the first end offsets)."""
        sample = self.sample
        if sample.engine is None or not sample.ends:
            return None
        committed = sample.engine.committed
        return sum(max(0, sample.ends[p] - offset) for p, offset in committed.items() if p in sample.ends)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ServiceObserver:
    """The engine's observer (`stream.engine.ports.Observer`): counters and health."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._health = metrics.health

    def consumed(self, topic: str, count: int) -> None:
        self._metrics.consumed.labels(topic).inc(count)

    def outcome(self, label: RecordLabel, outcome: str, reason: str) -> None:
        kind = label.type if label.type in _TYPES else "unknown"
        self._metrics.events.labels(kind, outcome, reason).inc()

    def produced(self, kind: str, reason: str) -> None:
        self._metrics.produced.labels(kind, reason).inc()

    def heartbeat(self) -> None:
        self._health.beat()

    def assigned(self, partitions: int) -> None:
        self._health.assigned()

    def stopping(self, reason: str) -> None:
        self._health.stopping(reason)


class _Sampled(Collector):
    """The gauges (and the governor's counters), from the last `Sample`, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # collected afresh at every scrape; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        sample, health = self._metrics.sample, self._metrics.health
        yield from _engine_gauges(sample.engine, sample.ends)
        caches = GaugeMetricFamily(
            "zendesk_stream_cache_entries",
            "Entries held per in-memory cache (each bounded): Zendesk ids, unchanged writes, delivered",
            labels=["cache"],
        )
        sizes = dict(sample.caches)
        if sample.engine is not None:
            sizes["delivered_tracks"] = sample.engine.delivered_ids
        for name, count in sorted(sizes.items()):
            caches.add_metric([name], count)
        yield caches
        yield from _governor_metrics(sample.governor)
        jobs = GaugeMetricFamily("zendesk_stream_bulk_jobs_in_flight", "Bulk jobs posted and not yet ended")
        if sample.bulk_jobs_in_flight is not None:
            jobs.add_metric([], sample.bulk_jobs_in_flight)
        yield jobs
        token = GaugeMetricFamily(
            "zendesk_stream_oauth_token_expires_in_seconds",
            "OAuth modes: seconds the access token in use has left (it is renewed at 80-90 % of its life)",
        )
        expiry = GaugeMetricFamily(
            "zendesk_stream_oauth_token_expiry_timestamp_seconds",
            "OAuth modes: when the access token in use expires (unix time; what the alert rules use)",
        )
        if sample.token_expires_in_s is not None and sample.token_expires_in_s != float("inf"):
            token.add_metric([], sample.token_expires_in_s)
            expiry.add_metric([], sample.taken_at_unix_s + sample.token_expires_in_s)
        yield token
        yield expiry
        age = health.heartbeat_age_s()
        beat = GaugeMetricFamily(
            "zendesk_stream_heartbeat_age_seconds",
            "Seconds since the engine's supervise loop last came round (/healthz fails past "
            f"{health.wedged_after_s:g})",
        )
        if age is not None:
            beat.add_metric([], age)
        yield beat
        ready = GaugeMetricFamily("zendesk_stream_ready", "1 while /readyz answers 200")
        ready.add_metric([], 1.0 if health.ready().ok else 0.0)
        yield ready


def _engine_gauges(engine: EngineSnapshot | None, ends: Mapping[Partition, int]) -> Iterable[Metric]:
    in_flight = GaugeMetricFamily(
        "zendesk_stream_in_flight_events", "Records started and not yet committed (STREAM_MAX_IN_FLIGHT)"
    )
    buffered = GaugeMetricFamily(
        "zendesk_stream_buffered_events",
        "Records held beyond the committed point: running, waiting in their lanes, or finished early",
    )
    parked = GaugeMetricFamily("zendesk_stream_parked_keys", "Keys waiting in the retry path")
    breaker = GaugeMetricFamily("zendesk_stream_breaker_open", "1 when the circuit breaker is open")
    committed = GaugeMetricFamily(
        "zendesk_stream_committed_offset",
        "The offset committed for a partition this member owns (the next to read)",
        labels=["topic", "partition"],
    )
    end = GaugeMetricFamily(
        "zendesk_stream_end_offset",
        "The end offset of a partition this member owns",
        labels=["topic", "partition"],
    )
    lag = GaugeMetricFamily(
        "zendesk_stream_consumer_lag",
        "Records of an owned partition not yet committed: end offset less committed offset",
        labels=["topic", "partition"],
    )
    if engine is not None:
        in_flight.add_metric([], engine.in_flight)
        buffered.add_metric([], engine.buffered)
        parked.add_metric([], engine.parked_keys)
        breaker.add_metric([], 1.0 if engine.breaker_open else 0.0)
        for (topic, number), offset in sorted(engine.committed.items()):
            labels = [topic, str(number)]
            committed.add_metric(labels, offset)
            high = ends.get((topic, number))
            if high is not None:
                end.add_metric(labels, high)
                lag.add_metric(labels, max(0, high - offset))
    return [in_flight, buffered, parked, breaker, committed, end, lag]


def _governor_metrics(governor: GovernorSnapshot | None) -> Iterable[Metric]:
    waits = CounterMetricFamily(
        "zendesk_stream_rate_limit_waits",
        "Requests that had to wait for the rate governor, by bucket",
        labels=["bucket"],
    )
    limited = CounterMetricFamily(
        "zendesk_stream_rate_limited",
        "429 answers from Zendesk, by the bucket they paused",
        labels=["bucket"],
    )
    tokens = GaugeMetricFamily(
        "zendesk_stream_rate_limit_tokens",
        "Requests a shared bucket of the governor would let go at once now",
        labels=["bucket"],
    )
    window = GaugeMetricFamily(
        "zendesk_stream_rate_limit_remaining",
        "What Zendesk's headers said is left of a bucket's window, less what we sent since",
        labels=["bucket"],
    )
    slots = GaugeMetricFamily("zendesk_stream_bulk_job_slots_free", "Zendesk's job slots free for our jobs")
    if governor is not None:
        for name, count in sorted({**_ZERO_BY_FAMILY, **governor.waits}.items()):
            waits.add_metric([name], count)
        for name, count in sorted({**_ZERO_BY_FAMILY, **governor.rate_limited}.items()):
            limited.add_metric([name], count)
        for name, value in sorted(governor.tokens.items()):
            tokens.add_metric([name], value)
        for name, value in sorted(governor.window_left.items()):
            window.add_metric([name], value)
        slots.add_metric([], governor.job_slots_free)
    return [waits, limited, tokens, window, slots]


class Sampler:
    """Takes a `Sample` every `interval_s` on the event loop; reads the end offsets of the partitions
    the engine owns every `ends_interval_s` on a worker thread (`read_ends` blocks)."""

    def __init__(
        self,
        metrics: Metrics,
        *,
        engine: Callable[[], EngineSnapshot],
        governor: Callable[[], GovernorSnapshot] | None = None,
        bulk_jobs: Callable[[], int] | None = None,
        token_expires_in_s: Callable[[], float | None] | None = None,
        caches: Callable[[], Mapping[str, int]] | None = None,
        read_ends: Callable[[list[Partition]], dict[Partition, int]] | None = None,
        interval_s: float = SAMPLE_INTERVAL_S,
        ends_interval_s: float = END_OFFSETS_INTERVAL_S,
    ) -> None:
        self._metrics = metrics
        self._engine = engine
        self._governor = governor
        self._bulk_jobs = bulk_jobs
        self._token = token_expires_in_s
        self._caches = caches
        self._read_ends = read_ends
        self._interval_s = interval_s
        self._ends_interval_s = ends_interval_s
        self._ends: dict[Partition, int] = {}

    def take(self) -> Sample:
        sample = Sample(
            engine=self._engine(),
            governor=self._governor() if self._governor else None,
            bulk_jobs_in_flight=self._bulk_jobs() if self._bulk_jobs else None,
            token_expires_in_s=self._token() if self._token else None,
            taken_at_unix_s=time.time(),
            ends=self._ends,
            caches=self._caches() if self._caches else {},
        )
        self._metrics.sample = sample
        return sample

    async def run(self) -> None:
        """Until cancelled."""
        ends = asyncio.create_task(self._read_ends_continuously(), name="end-offsets")
        try:
            while True:
                self.take()
                await asyncio.sleep(self._interval_s)
        finally:
            ends.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ends

    async def _read_ends_continuously(self) -> None:
        if self._read_ends is None:
            return
        while True:
            owned = sorted(self._engine().committed)
            if owned:
                try:
                    self._ends = await asyncio.to_thread(self._read_ends, owned)
                except Exception as err:  # the lag is then older; nothing else depends on it
                    log.warning("reading end offsets for the lag metrics failed", error=str(err))
            await asyncio.sleep(self._ends_interval_s)


# ------------------------------------------------------------------------------------------ the server


class MetricsServer:
    """`/metrics`, `/healthz` and `/readyz` on a thread of their own (they answer while the loop is
    wedged: that is when /healthz must say so)."""

    def __init__(self, metrics: Metrics, *, port: int, host: str = "") -> None:
        handler = _handler(metrics)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise ConfigError(
                f"STREAM_METRICS_PORT: cannot serve metrics on port {port} ({err.strerror or err}); "
                "choose another port, or 0 to turn the server off"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics server listening", port=self.port, paths=["/metrics", "/healthz", "/readyz"])
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: Metrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "zendesk-stream"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._verdict(metrics.health.live())
            elif path == "/readyz":
                self._verdict(metrics.health.ready())
            else:
                self._reply(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain; charset=utf-8")

        def _verdict(self, verdict: Verdict) -> None:
            body: dict[str, Any] = {"status": verdict.status}
            if verdict.detail:
                body["detail"] = verdict.detail
            self._reply(200 if verdict.ok else 503, json.dumps(body).encode() + b"\n", "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Scrapes and probes come every few seconds: not worth a line each."""

    return Handler

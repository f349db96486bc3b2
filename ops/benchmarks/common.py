"""What the benchmarks share: a broker, topics, records, a consumer process and its peak memory, the
machine they ran on, and RESULTS.md. Run the benchmarks from the repository root as modules
(`.venv/bin/python -m ops.benchmarks.NAME`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.localkafka import load_launcher
from stream.simulator.testing import RunningSimulator

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "ops" / "benchmarks" / "RESULTS.md"


@contextlib.contextmanager
def broker() -> Iterator[tuple[str, str]]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, "KAFKA_BOOTSTRAP_SERVERS"
        return
    launcher = load_launcher()
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as data_dir:
        cluster = launcher.start(Path(data_dir), 1, launcher.free_base_port(), None, 180.0)
        try:
            yield cluster.bootstrap, "native launcher ops/kafka/kafkalocal.py (one node, KRaft)"
        finally:
            for node in cluster.nodes:
                launcher.stop_node(node)


def create_topics(
    bootstrap: str, names: list[str], partitions: int = 1, config: dict[str, str] | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [NewTopic(n, partitions, 1, config=config or {}) for n in names]
    futures = admin.create_topics(topics, operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)


def produce(
    bootstrap: str, topic: str, records: list[tuple[str, bytes]], *, partition: int | None = 0
) -> None:
    """Records with acks=all, all into `partition` (None: by the key's hash)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 20}
    )
    for key, value in records:
        while True:
            try:
                if partition is None:
                    producer.produce(topic, key=key, value=value)
                else:
                    producer.produce(topic, key=key, value=value, partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(120) != 0:
        raise RuntimeError("records were not delivered to Kafka")


def create_delivered_topic(bootstrap: str, topic: str, group: str) -> None:
    """The service's default delivered topic (`<input>.<group>.delivered`), with a partition for each of
    the input's, unless it exists. Left to its default name, so an older tree given the same environment
    (`engine_bench --compare-with`) meets no setting it does not know."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = len(admin.list_topics(topic, timeout=30).topics[topic].partitions)
    name = f"{topic}.{group}.delivered"
    if name not in admin.list_topics(timeout=30).topics:
        create_topics(bootstrap, [name], partitions)


def service_env(
    bootstrap: str, topic: str, group: str, simulator: RunningSimulator, **extra: str
) -> dict[str, str]:
    """The service's environment; creates the group's delivered topic too."""
    create_delivered_topic(bootstrap, topic, group)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    return {
        **clean,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STREAM_TOPIC": topic,
        "STREAM_GROUP_ID": group,
        "STREAM_RETRY_TOPIC": f"{topic}.retry",
        "STREAM_DLQ_TOPIC": f"{topic}.dlq",
        "ZENDESK_SUBDOMAIN": "bench",
        "ZENDESK_BASE_URL": simulator.base_url,
        "ZENDESK_EMAIL": simulator.email or "",
        "ZENDESK_API_TOKEN": simulator.api_token or "",
        "ZENDESK_PLAN": simulator.zendesk_plan(),
        "ZENDESK_SETTINGS": json.dumps({"events": ["*"]}),
        "STREAM_LOG_FORMAT": "json",
        "STREAM_LOG_LEVEL": "warning",  # one log line per event would cost the lanes arm more
        **extra,
    }


@dataclass(frozen=True)
class Finished:
    exit_code: int
    wall_s: float
    max_rss_kib: int
    samples_kib: list[int]
    hwm_kib: int
    cpu_s: float = 0.0  # user + system time of the process


def _status_field(pid: int, name: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{name}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def run_consumer(
    env: dict[str, str],
    log_path: Path,
    *,
    timeout_s: float,
    sample: bool = False,
    code: Path = REPO,
) -> Finished:
    """`zendesk-stream run --exit-at-end` as a child, running the checkout at `code`; its own peak RSS
    from wait4's rusage."""
    samples: list[int] = []
    hwm = [0]
    started = time.monotonic()
    with log_path.open("w") as log:
        command = [sys.executable, "-m", "stream", "run", "--exit-at-end"]
        if profile_dir := os.environ.get("BENCH_PY_SPY_DIR"):  # a profile of each consumer, for py-spy users
            out = Path(profile_dir) / f"{log_path.stem}.txt"
            command = ["py-spy", "record", "--format", "raw", "--nonblocking", "-o", str(out), "--", *command]
        process = subprocess.Popen(
            command,
            env={**env, "PYTHONPATH": str(code)},
            cwd=code,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set():
            rss, peak = _status_field(process.pid, "VmRSS"), _status_field(process.pid, "VmHWM")
            if rss is None or (rss == 0 and samples):
                return
            if rss:
                samples.append(rss)
            hwm[0] = max(hwm[0], peak or 0)
            stop.wait(0.1)

    thread = threading.Thread(target=sampler, daemon=True)
    if sample:
        thread.start()
    deadline = started + timeout_s
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the consumer did not finish within {timeout_s}s; see {log_path}")
        time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    stop.set()
    if sample:
        thread.join(timeout=5)
    cpu = float(usage.ru_utime + usage.ru_stime)
    return Finished(process.returncode, wall, int(usage.ru_maxrss), samples, hwm[0], cpu)


def run_consumers(
    envs: list[dict[str, str]], log_dir: Path, name: str, *, timeout_s: float
) -> list[Finished]:
    """Several `run --exit-at-end` processes at once (one per env), each with its own log."""
    results: list[Finished | BaseException] = [RuntimeError("not run")] * len(envs)

    def one(index: int) -> None:
        try:
            results[index] = run_consumer(envs[index], log_dir / f"{name}-{index}.log", timeout_s=timeout_s)
        except BaseException as err:
            results[index] = err

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(envs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    finished = []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        finished.append(result)
    return finished


def start_consumer(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`zendesk-stream run` (no end) as a child; stop it with `stop_consumer`."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream", "run"],
            env={**env, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_consumer(process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    process.terminate()
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def machine() -> str:
    cpus = os.cpu_count()
    memory = ""
    with contextlib.suppress(OSError):
        total = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        memory = f", {int(total.group(1)) / 1024**2:.0f} GiB RAM" if total else ""
    return f"{cpus} vCPUs{memory}, Linux {platform.release()}, Python {platform.python_version()}"


def write_section(section: str, text: str) -> None:
    """Put `text` in RESULTS.md as the section headed `section`, replacing an earlier one."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = current.find(f"\n{section}\n")
    if start >= 0:
        following = current.find("\n## ", start + len(section) + 2)
        rest = current[following:] if following >= 0 else ""
        current = current[: start + 1] + text + rest
    else:
        current = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(current)

"""Run `zendesk-stream run` as a real process against a broker and the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import REPO, group_of


def service_env(
    bootstrap: str, topic: str, simulator: RunningSimulator, settings: dict[str, Any], **extra: str
) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    return {
        **clean,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STREAM_TOPIC": topic,
        "STREAM_GROUP_ID": group_of(topic),
        "ZENDESK_SUBDOMAIN": "acme",
        "ZENDESK_BASE_URL": simulator.base_url,
        "ZENDESK_EMAIL": simulator.email or "",
        "ZENDESK_API_TOKEN": simulator.api_token or "",
        "ZENDESK_SETTINGS": json.dumps(settings),
        "ZENDESK_PLAN": simulator.zendesk_plan(),
        "STREAM_LOG_FORMAT": "json",
        "STREAM_LOG_LEVEL": "debug",  # the per-record outcome lines the tests read
        "STREAM_METRICS_PORT": "0",  # several services run at once; tests of the metrics choose a port
        **extra,
    }


class PeakMemory:
    """The highest resident memory (the kernel's VmHWM) of any service process started since `reset()`:
    each `run` process is watched by a thread that reads /proc/<pid>/status until it is gone. A process
    killed between two reads loses at most its last `interval_s` of growth."""

    def __init__(self, *, interval_s: float = 0.25) -> None:
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._peak_kib = 0

    def reset(self) -> None:
        with self._lock:
            self._peak_kib = 0

    @property
    def peak_mib(self) -> float:
        with self._lock:
            return self._peak_kib / 1024

    def watch(self, process: subprocess.Popen[str]) -> None:
        threading.Thread(target=self._follow, args=(process,), name="peak-memory", daemon=True).start()

    def _follow(self, process: subprocess.Popen[str]) -> None:
        while process.poll() is None:
            hwm = status_kib(process.pid, "VmHWM")
            if hwm is not None:
                with self._lock:
                    self._peak_kib = max(self._peak_kib, hwm)
            time.sleep(self._interval_s)


def status_kib(pid: int, field_name: str = "VmRSS") -> int | None:
    """A field of /proc/<pid>/status in KiB (VmRSS now, VmHWM the peak so far); None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name == field_name:
            return int(value.split()[0])
    return None


SERVICE_MEMORY = PeakMemory()


def start_service(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[str]:
    """The service in the background; its logs go to `log_path` (a pipe could fill up and block it)."""
    with log_path.open("a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream", "run", *args],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    SERVICE_MEMORY.watch(process)
    return process


def zendesk_stream(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`zendesk-stream ARGS` as a process, to its end."""
    command = [sys.executable, "-m", "stream", *args]
    with subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        SERVICE_MEMORY.watch(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run_to_end(env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return zendesk_stream(["run", "--exit-at-end"], env, timeout_s)


def log_events(stderr: str) -> list[dict[str, Any]]:
    """The service's JSON log lines (others, e.g. from librdkafka before logging is set up, are skipped)."""
    parsed = []
    for line in stderr.splitlines():
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue
    return parsed

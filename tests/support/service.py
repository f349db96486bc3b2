"""Run `zendesk-stream run` as a real process against a broker and the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def start_service(env: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen[str]:
    """The service in the background; its logs go to `log_path` (a pipe could fill up and block it)."""
    with log_path.open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "stream", "run", *args],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def zendesk_stream(
    args: list[str], env: dict[str, str], timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """`zendesk-stream ARGS` as a process, to its end."""
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


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

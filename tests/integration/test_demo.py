"""`zendesk-stream demo` on a terminal: the steps, one live progress line and the summary, no log flood."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.kafka import REPO

pytestmark = pytest.mark.kafka


def _run_on_a_terminal(args: list[str], env: dict[str, str], timeout_s: float) -> tuple[int, str]:
    leader, follower = pty.openpty()
    process = subprocess.Popen(args, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=REPO)
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=max(deadline - time.monotonic(), 1)), output.decode("utf-8", "replace")


def test_the_demo_shows_progress_and_a_summary_and_keeps_its_log_in_a_file() -> None:
    """Before: about 200 JSON info lines mixed into the summary."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    code, output = _run_on_a_terminal([sys.executable, "-m", "stream", "demo"], env, timeout_s=240)

    assert code == 0, output[-3000:]
    lines = output.replace("\r\n", "\n").split("\n")
    assert not [line for line in lines if line.lstrip().startswith('{"')], "log lines on the terminal"
    assert re.search(r"\r   \d+ of 134 events done, \d+/s", output), "no live progress line"
    assert "134 of 134 events done" in output
    assert "what reached Zendesk" in output
    log_path = Path(re.search(r"the service's log: (\S+)", output).group(1))  # type: ignore[union-attr]
    logged = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(entry.get("event") == "engine started" for entry in logged)

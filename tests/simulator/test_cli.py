"""The command line: ready line, free port, clean stop, one-line errors."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from stream.simulator.testing import READY_PREFIX, run_simulator


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.simulator", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--plan", "gold"],
        ["--port", "not-a-number"],
        ["--email", "a@example.com"],
        ["--oauth-token", "x", "--token", "y", "--email", "a@example.com"],
        ["--latency-ms", "-1"],
        ["--error-rate", "2"],
        ["--port", "70000"],
        ["--bogus"],
        ["--set", "no_such_option=1"],
        ["--set", "rate_limits=maybe"],
        ["--set", "novalue"],
        ["--oauth-client", "no-colon"],
        ["--oauth-client", ":secret-only"],
        ["--oauth-client", "id-only:"],
        ["--set", "oauth_min_expires_in_s=200000"],
    ],
)
def test_bad_flags_give_one_clear_line_and_a_non_zero_exit(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_oauth_client_flag_does_not_echo_the_secret() -> None:
    result = run_cli("--oauth-client", "s3cret-value")
    assert result.returncode == 2 and "s3cret-value" not in result.stderr


def test_set_flag_changes_any_option() -> None:
    with run_simulator(
        extra_args=["--set", "invalid_time_zone=ignore", "--set", "limit_scale=0.5"]
    ) as running:
        options = running.control.options()
    assert (options["invalid_time_zone"], options["limit_scale"]) == ("ignore", 0.5)


def test_port_0_prints_the_ready_line_and_sigterm_stops_cleanly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "stream.simulator", "--port", "0", "--plan", "team"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith(READY_PREFIX)
        base_url = line.removeprefix(READY_PREFIX).strip()
        response = httpx.get(
            f"{base_url}/api/v2/user_fields", auth=("admin@example.com/token", "simulator-token")
        )
        assert response.headers["x-rate-limit"] == "200"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None and "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_without_its_extra_the_simulator_names_the_extra_to_install() -> None:
    """uvicorn and friends are in the `simulator` extra, so the service image does without them."""
    hide_uvicorn = (
        "import sys; sys.modules['uvicorn'] = None; "
        "from stream.cli import main; sys.exit(main(['simulator']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_uvicorn], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "zendesk-stream: the simulator needs its server packages (uvicorn is missing): "
        "pip install 'zendesk-stream[simulator]'"
    )

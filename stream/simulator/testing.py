"""Start the simulator from tests: as a real subprocess (the default) or in a background thread.

    with run_simulator(extra_args=["--no-rate-limits"]) as sim:
        with sim.client() as zendesk:
            zendesk.get("/api/v2/users/1.json")
        sim.control.reset(manual_clock=True)

    with run_simulator(oauth_clients={"svc": "s3cret"}) as sim:
        token = sim.request_oauth_token("svc")["access_token"]
        with sim.bearer_client(token) as zendesk:
            zendesk.get("/api/v2/users/1.json")

Both wait for readiness with a deadline and stop the server on exit.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import httpx

from stream.simulator.options import SimulatorOptions

READY_PREFIX = "simulator listening on "


class SimulatorStartError(RuntimeError):
    pass


class ControlClient:
    """A typed client of the ``/_simulator/`` control API."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/_simulator", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        response = self._http.request(method, path, json=body, params=params)
        if response.status_code >= 400:
            raise RuntimeError(f"control {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def reset(self, **options: Any) -> dict[str, Any]:
        """Empty account; ``options`` apply on top of the launch options until the next reset."""
        result: dict[str, Any] = self._call("POST", "/reset", {"options": options})["options"]
        return result

    def seed(
        self,
        *,
        users: Sequence[dict[str, Any]] = (),
        organizations: Sequence[dict[str, Any]] = (),
        user_fields: Sequence[dict[str, Any]] = (),
        organization_fields: Sequence[dict[str, Any]] = (),
        memberships: Sequence[dict[str, Any]] = (),
    ) -> dict[str, list[dict[str, Any]]]:
        body = {
            "users": list(users),
            "organizations": list(organizations),
            "user_fields": list(user_fields),
            "organization_fields": list(organization_fields),
            "memberships": list(memberships),
        }
        result: dict[str, list[dict[str, Any]]] = self._call("POST", "/seed", body)
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/state")
        return result

    def requests(
        self,
        *,
        since: int | None = None,
        user_id: int | None = None,
        user_key: str | None = None,
        method: str | None = None,
        path: str | None = None,
        auth: str | None = None,
    ) -> list[dict[str, Any]]:
        """Request log entries; ``auth`` filters by how they authenticated (``api_token``, ``oauth_token``,
        ``oauth:<client_id>``)."""
        filters = {
            "since": since,
            "user_id": user_id,
            "user_key": user_key,
            "method": method,
            "path": path,
            "auth": auth,
        }
        params = {name: value for name, value in filters.items() if value is not None}
        result: list[dict[str, Any]] = self._call("GET", "/requests", params=params)["requests"]
        return result

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def inject_fault(
        self,
        *,
        path: str,
        method: str | None = None,
        count: int = 1,
        status: int = 503,
        retry_after: int | None = None,
        action: str = "status",
        error: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Fail the next ``count`` requests whose path matches the regex ``path``.

        ``action``: ``status`` (answer ``status``), ``drop`` (close the connection unanswered) or
        ``drop_after`` (apply the request, then close the connection without the answer).
        ``error``/``description`` set the answer's JSON body as Zendesk words it, e.g. ``status=404,
        error="RecordNotFound", description="Not found"``; without them the body is a generic one.
        """
        body = {
            "path": path,
            "method": method,
            "count": count,
            "status": status,
            "retry_after": retry_after,
            "action": action,
            "error": error,
            "description": description,
        }
        result: dict[str, Any] = self._call("POST", "/faults", body)["fault"]
        return result

    def add_outage(
        self,
        *,
        duration_seconds: float,
        start_in_seconds: float = 0,
        status: int = 503,
        retry_after: int | None = None,
        action: str = "status",
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "duration_seconds": duration_seconds,
            "start_in_seconds": start_in_seconds,
            "status": status,
            "action": action,
        }
        if retry_after is not None:
            body["retry_after"] = retry_after
        result: dict[str, Any] = self._call("POST", "/outages", body)["outage"]
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def options(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/options")["options"]
        return result

    def set_options(self, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PATCH", "/options", changes)["options"]
        return result

    def advance_clock(self, seconds: float) -> float:
        result: float = self._call("POST", "/clock/advance", {"seconds": seconds})["now"]
        return result

    def complete_jobs(self) -> None:
        self._call("POST", "/jobs/complete")

    def oauth(self) -> dict[str, Any]:
        """OAuth clients, issued access and refresh tokens (values masked to ``***`` + last 4), grants."""
        result: dict[str, Any] = self._call("GET", "/oauth")
        return result

    def oauth_tokens(self, *, client_id: str | None = None) -> list[dict[str, Any]]:
        """Issued access tokens' metadata, oldest first: ``id``, ``state`` (active, expired, revoked,
        rotated), ``grant_type``, ``expires_at``, ``uses``, ``last_used_at``, ..."""
        tokens: list[dict[str, Any]] = self.oauth()["access_tokens"]
        return [t for t in tokens if client_id in (None, t["client_id"])]

    def oauth_grants(self) -> dict[str, int]:
        """Successful token grants by grant type."""
        result: dict[str, int] = self.oauth()["grants"]
        return result

    def add_oauth_client(self, client_id: str, client_secret: str) -> None:
        """A confidential OAuth client until the next reset."""
        self._call("POST", "/oauth/clients", {"client_id": client_id, "client_secret": client_secret})

    def add_oauth_code(self, code: str) -> None:
        """An authorization code any client can exchange once, until the next reset."""
        self._call("POST", "/oauth/codes", {"code": code})

    def revoke_oauth_tokens(
        self, *, client_id: str | None = None, refresh_tokens: bool = False
    ) -> dict[str, int]:
        """Revoke every live access token (of one client), and the refresh tokens too if asked."""
        body: dict[str, Any] = {"refresh_tokens": refresh_tokens}
        if client_id is not None:
            body["client_id"] = client_id
        result: dict[str, int] = self._call("POST", "/oauth/revoke", body)
        return result


@dataclass
class RunningSimulator:
    base_url: str
    email: str | None
    api_token: str | None = field(repr=False)
    oauth_token: str | None = field(repr=False)
    control: ControlClient
    oauth_clients: dict[str, str] = field(default_factory=dict, repr=False)

    def zendesk_plan(self) -> str:
        """The `ZENDESK_PLAN` a service pointed at this simulator should believe in."""
        options = self.control.options()
        return str(options["plan"]) if options["rate_limits"] else "unlimited"

    def auth_headers(self) -> dict[str, str]:
        if self.oauth_token:
            return {"Authorization": f"Bearer {self.oauth_token}"}
        return {}

    def client(self, *, timeout: float = 10.0) -> httpx.Client:
        """An httpx client that authenticates like our service does (the caller closes it)."""
        basic = httpx.BasicAuth(f"{self.email}/token", self.api_token or "") if self.api_token else None
        return httpx.Client(base_url=self.base_url, auth=basic, headers=self.auth_headers(), timeout=timeout)

    def bearer_client(self, access_token: str, *, timeout: float = 10.0) -> httpx.Client:
        """An httpx client sending ``Authorization: Bearer <access_token>`` (the caller closes it)."""
        return httpx.Client(
            base_url=self.base_url, headers={"Authorization": f"Bearer {access_token}"}, timeout=timeout
        )

    def request_oauth_token(
        self, client_id: str, *, grant_type: str = "client_credentials", **fields: Any
    ) -> dict[str, Any]:
        """``POST /oauth/tokens`` for a configured client (its secret filled in); the answer's JSON.
        ``fields`` add e.g. ``refresh_token=...``, ``code=...``, ``expires_in=...``. Raises on an error."""
        body = {
            "grant_type": grant_type,
            "client_id": client_id,
            "client_secret": self.oauth_clients[client_id],
            **fields,
        }
        response = httpx.post(f"{self.base_url}/oauth/tokens", json=body, timeout=10.0)
        if response.status_code != 200:
            raise RuntimeError(f"POST /oauth/tokens: {response.status_code} {response.text}")
        result: dict[str, Any] = response.json()
        return result


def _credentials(args: Sequence[str]) -> tuple[str | None, str | None, str | None]:
    def value(flag: str) -> str | None:
        return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None

    options = SimulatorOptions(
        email=value("--email"), api_token=value("--token"), oauth_token=value("--oauth-token")
    ).with_default_credentials()
    return options.email, options.api_token, options.oauth_token


def _oauth_clients_in(args: Sequence[str]) -> dict[str, str]:
    """Clients given as ``--oauth-client ID:SECRET`` in ``extra_args`` (for ``request_oauth_token``)."""
    pairs = [args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--oauth-client"]
    return dict(pair.split(":", 1) for pair in pairs if ":" in pair)


@contextmanager
def run_simulator(
    *,
    extra_args: Sequence[str] = (),
    oauth_clients: Mapping[str, str] | None = None,
    oauth_codes: Sequence[str] = (),
    startup_timeout: float = 20.0,
) -> Iterator[RunningSimulator]:
    """``python -m stream.simulator --port 0 EXTRA_ARGS`` as a subprocess, until the block ends.

    ``oauth_clients`` (id → secret) and ``oauth_codes`` become ``--oauth-client``/``--oauth-code`` flags.
    """
    given = dict(oauth_clients or {})
    clients = {**_oauth_clients_in(extra_args), **given}
    oauth_args = [arg for cid, secret in given.items() for arg in ("--oauth-client", f"{cid}:{secret}")]
    oauth_args += [arg for code in oauth_codes for arg in ("--oauth-code", code)]
    command = [sys.executable, "-m", "stream.simulator", "--port", "0", *extra_args, *oauth_args]
    process = subprocess.Popen(  # noqa: S603 - our own module, arguments from the caller
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Drain stderr all along: a full pipe would block the server on its next log line.
    stderr_tail: deque[str] = deque(maxlen=50)
    stderr_pump = threading.Thread(target=_keep_tail, args=(process.stderr, stderr_tail), daemon=True)
    stderr_pump.start()
    try:
        base_url = _wait_for_ready_line(process, startup_timeout, stderr_pump, stderr_tail)
        email, token, oauth = _credentials(extra_args)
        control = ControlClient(base_url)
        try:
            yield RunningSimulator(
                base_url=base_url,
                email=email,
                api_token=token,
                oauth_token=oauth,
                control=control,
                oauth_clients=clients,
            )
        finally:
            control.close()
    finally:
        _stop(process)


def _wait_for_ready_line(
    process: subprocess.Popen[str], timeout: float, stderr_pump: threading.Thread, stderr_tail: deque[str]
) -> str:
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump_lines, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SimulatorStartError(f"the simulator did not report ready within {timeout}s")
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            stderr_pump.join(timeout=5)
            raise SimulatorStartError(
                f"the simulator exited before it was ready: {''.join(stderr_tail).strip()}"
            )
        if line.startswith(READY_PREFIX):
            return line.removeprefix(READY_PREFIX).strip()


def _keep_tail(stream: IO[str] | None, tail: deque[str]) -> None:
    if stream is not None:
        for line in stream:
            tail.append(line)


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@contextmanager
def run_simulator_in_thread(
    options: SimulatorOptions | None = None, *, startup_timeout: float = 10.0
) -> Iterator[RunningSimulator]:
    """The simulator in a background thread of this process (faster to start; shares the GIL)."""
    import asyncio  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from stream.simulator.app import SimulatorApp  # noqa: PLC0415

    options = (options or SimulatorOptions()).with_default_credentials()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see cli._bound_socket
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        SimulatorApp(options=options), loop="asyncio", http="httptools", lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise SimulatorStartError("the in-process simulator did not start")
            time.sleep(0.005)
        base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        control = ControlClient(base_url)
        try:
            yield RunningSimulator(
                base_url=base_url,
                email=options.email,
                api_token=options.api_token,
                oauth_token=options.oauth_token,
                control=control,
                oauth_clients=dict(options.oauth_clients),
            )
        finally:
            control.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

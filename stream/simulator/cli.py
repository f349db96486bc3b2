"""``zendesk-stream simulator`` / ``python -m stream.simulator``: run the simulator as an HTTP server."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

import orjson

from stream.errors import ConfigError
from stream.simulator.options import DEFAULT_API_TOKEN, DEFAULT_EMAIL, PLANS, SimulatorOptions

READY_LINE = "simulator listening on http://{host}:{port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    auth = parser.add_argument_group(
        f"credentials (default: --email {DEFAULT_EMAIL} --token {DEFAULT_API_TOKEN})"
    )
    auth.add_argument("--email", help="agent email for API-token auth (Basic email/token:TOKEN)")
    auth.add_argument("--token", help="API token")
    auth.add_argument("--oauth-token", help="accept this OAuth bearer token (instead of email/token)")
    auth.add_argument(
        "--oauth-client",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help="a confidential OAuth client for POST /oauth/tokens (repeatable; alongside either of the above)",
    )
    auth.add_argument(
        "--oauth-code",
        action="append",
        default=[],
        metavar="CODE",
        help="an authorization code any OAuth client can exchange once (repeatable)",
    )
    parser.add_argument("--plan", choices=list(PLANS), default="enterprise", help="rate-limit plan")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn every rate limit off")
    parser.add_argument("--limit-scale", type=float, default=1.0, help="multiply every limit (default 1.0)")
    parser.add_argument(
        "--create-update-user-per-second",
        type=int,
        default=1,
        help="account-wide create_or_update user limit per second (default 1)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="fixed latency added to every request")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="random extra latency, 0..N ms")
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered with 503")
    parser.add_argument(
        "--search-lag-ms", type=float, default=0.0, help="users/search?query= lag behind writes"
    )
    parser.add_argument(
        "--manual-clock", action="store_true", help="deterministic clock moved via the control API"
    )
    parser.add_argument(
        "--job-mode", choices=["clock", "per_poll"], default="clock", help="how jobs progress"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (ids, jitter, error rate)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="set any simulator option (JSON value, else a string), e.g. --set invalid_time_zone=ignore",
    )


def options_from(args: argparse.Namespace) -> SimulatorOptions:
    """Options from parsed flags; raises ValueError with a one-line reason."""
    if args.oauth_token and (args.email or args.token):
        raise ValueError("use either --email/--token or --oauth-token, not both")
    if args.port < 0 or args.port > 65535:
        raise ValueError("--port must be between 0 and 65535")
    options = SimulatorOptions(
        email=args.email,
        api_token=args.token,
        oauth_token=args.oauth_token,
        oauth_clients=_oauth_clients(args.oauth_client),
        oauth_codes=list(args.oauth_code),
        plan=args.plan,
        rate_limits=not args.no_rate_limits,
        limit_scale=args.limit_scale,
        create_update_user_per_second=args.create_update_user_per_second,
        latency_ms=args.latency_ms,
        jitter_ms=args.jitter_ms,
        error_rate=args.error_rate,
        search_lag_ms=args.search_lag_ms,
        manual_clock=args.manual_clock,
        job_mode=args.job_mode,
        random_seed=args.seed,
    )
    options.validate()
    return options.updated(_option_assignments(args.set)).with_default_credentials()


def _oauth_clients(pairs: list[str]) -> dict[str, str]:
    clients: dict[str, str] = {}
    for pair in pairs:
        client_id, sep, secret = pair.partition(":")
        if not sep or not client_id or not secret:
            raise ValueError("--oauth-client takes ID:SECRET, both non-empty")
        clients[client_id] = secret
    return clients


def _option_assignments(assignments: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, raw = assignment.partition("=")
        if not sep or not name:
            raise ValueError(f"--set takes OPTION=VALUE, got {assignment!r}")
        try:
            changes[name.strip()] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            changes[name.strip()] = raw
    return changes


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except ValueError as error:
        print(f"zendesk-stream simulator: {error}", file=sys.stderr)
        return 2
    try:
        sock = _bound_socket(args.host, args.port)
    except OSError as error:
        print(
            f"zendesk-stream simulator: cannot listen on {args.host}:{args.port}: {error.strerror}",
            file=sys.stderr,
        )
        return 1
    try:
        from stream.simulator.server import serve  # noqa: PLC0415 (uvicorn is in the simulator extra)
    except ModuleNotFoundError as missing:
        sock.close()
        raise ConfigError(
            f"the simulator needs its server packages ({missing.name} is missing): "
            "pip install 'zendesk-stream[simulator]'"
        ) from None
    return asyncio.run(serve(options, sock))


def _bound_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this. Without it, uvicorn's separate header and body writes meet the client's
    # delayed ACK (Nagle) and every response takes about 40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineErrorParser(prog="zendesk-stream simulator", description="Run the Zendesk simulator.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(2)

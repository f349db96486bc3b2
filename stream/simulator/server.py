"""The simulator's HTTP server: uvicorn with uvloop and httptools (the `simulator` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn

from stream.simulator.app import SimulatorApp
from stream.simulator.cli import READY_LINE
from stream.simulator.options import SimulatorOptions


async def serve(options: SimulatorOptions, sock: socket.socket) -> int:
    config = uvicorn.Config(
        SimulatorApp(options=options),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        # Longer than any client pool's idle timeout, so a client never reuses a connection we just closed.
        timeout_keep_alive=75,
    )
    server = _ServerExitingZero(config)
    host, port = sock.getsockname()[:2]

    async def announce_when_started() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        shown_host = f"[{host}]" if ":" in host else host
        print(READY_LINE.format(host=shown_host, port=port), flush=True)

    announcer = asyncio.create_task(announce_when_started())
    await server.serve(sockets=[sock])
    announcer.cancel()
    return 0


class _ServerExitingZero(uvicorn.Server):
    """SIGTERM/SIGINT shut down gracefully and the process exits 0.

    uvicorn re-raises the signal after its graceful shutdown, which ends the process with -15; a parent that
    stopped the simulator on purpose wants a clean 0. A second signal forces the exit.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_exit)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

"""A real Confluent-compatible schema registry for the tests: Apicurio Registry from ops/registry.

The launcher (ops/registry/registry.py) is a standalone, standard-library script like the Kafka one; it
is loaded here as a module. No path skips: without Java 21+ or Maven the tests that need a registry
fail, with the launcher's reason.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

LAUNCHER = Path(__file__).resolve().parents[2] / "ops" / "registry" / "registry.py"
START_WAIT_S = 180.0  # a cold start resolves ~160 MB from Maven Central first


def load_registry_launcher() -> ModuleType:
    loaded = sys.modules.get("zs_registry_launcher")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("zs_registry_launcher", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["zs_registry_launcher"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


REQUEST_TIMEOUT_S = 30


@dataclass(frozen=True)
class RunningRegistry:
    url: str  # what SCHEMA_REGISTRY_URL would say
    data_dir: Path
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def client_conf(self) -> dict[str, str | int]:
        """Configuration for confluent_kafka.schema_registry.SchemaRegistryClient.

        With a timeout: the client's default is none, and one request the registry left unanswered under
        a loaded CI machine held a test until pytest's 300 s timeout. With one, the client retries it."""
        conf: dict[str, str | int] = {"url": self.url, "timeout": REQUEST_TIMEOUT_S}
        if self.user is not None and self.password is not None:
            conf["basic.auth.user.info"] = f"{self.user}:{self.password}"
        return conf


@contextmanager
def native_registry(
    data_dir: Path, *, user: str | None = None, password: str | None = None, port: int | None = None
) -> Iterator[RunningRegistry]:
    """Apicurio Registry on a free loopback port (or `port`), with HTTP basic auth when `user` is given;
    stopped on exit. Its schemas live under `data_dir`, so the same directory restarts with them."""
    launcher = load_registry_launcher()
    credentials = launcher.Credentials(user=user, password=password or "") if user is not None else None
    registry = launcher.start(
        data_dir, port or launcher.free_port(), credentials=credentials, wait_s=START_WAIT_S
    )
    try:
        yield RunningRegistry(url=registry.url, data_dir=data_dir, user=user, password=password)
    finally:
        launcher.stop(data_dir)

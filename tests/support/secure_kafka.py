"""A real Kafka broker that asks for SASL_SSL with SCRAM, for the tests.

The native launcher's `--secure` mode (ops/kafka/kafkalocal.py): one KRaft node in a temporary
directory on free ports, a SASL_SSL listener with SCRAM-SHA-256 and SCRAM-SHA-512, a CA and broker
certificate made for it, and SCRAM users created when its storage is formatted. Always native, even when
`KAFKA_BOOTSTRAP_SERVERS` names another broker: that one's security is not ours to choose.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream.localkafka import load_launcher


@dataclass(frozen=True)
class SecureKafka:
    """Unpacks as (bootstrap, ca_path, users). `users` maps names to passwords and stays out of reprs."""

    bootstrap: str  # the SASL_SSL listener
    ca_path: Path  # PEM, for librdkafka's ssl.ca.location
    users: Mapping[str, str] = field(repr=False)
    plaintext_bootstrap: str  # the same broker without TLS or SASL, for setting up and checking
    access: Any = field(repr=False)  # the launcher's SecureAccess

    def __iter__(self) -> Iterator[Any]:
        return iter((self.bootstrap, self.ca_path, self.users))

    def client_config(
        self, user: str, mechanism: str = "SCRAM-SHA-512"
    ) -> dict[str, str | int | float | bool]:
        """librdkafka settings of `user` over SASL_SSL (SCRAM-SHA-256 or SCRAM-SHA-512)."""
        return dict(self.access.client_config(user, mechanism))

    def service_env(self, user: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """The same as zendesk-stream's KAFKA_* environment."""
        return dict(self.access.service_env(user, mechanism))


@contextmanager
def secure_kafka(
    data_dir: Path | None = None,
    *,
    users: Mapping[str, str | None] | None = None,
    wait_s: float = 180.0,
) -> Iterator[SecureKafka]:
    """Start a one-node SASL_SSL broker in `data_dir` (a new temporary directory when None, removed
    afterwards) on free ports; stop it on exit. `users`: name -> password, or None for a random one
    (default: the launcher's one user, `stream`)."""
    launcher = load_launcher()
    owned = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="kafka-secure-")) if data_dir is None else data_dir
    try:
        base_port = launcher.free_base_port(1, secure=True)
        cluster = launcher.start(directory, 1, base_port, None, wait_s, secure=True, users=users)
        access = launcher.secure_access(cluster)
        yield SecureKafka(
            bootstrap=access.bootstrap,
            ca_path=access.ca_path,
            users=dict(access.users),
            plaintext_bootstrap=cluster.bootstrap,
            access=access,
        )
    finally:
        if launcher.load_layout(directory) is not None:  # also when start-up failed half-way
            for node in launcher.existing_cluster(directory).nodes:
                launcher.stop_node(node)
        if owned:
            shutil.rmtree(directory, ignore_errors=True)

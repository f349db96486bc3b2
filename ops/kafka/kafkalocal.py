#!/usr/bin/env python3
"""Real Apache Kafka on this machine, without Docker: KRaft mode, one node or a three-node cluster.

Secure Kafka (SASL_SSL with SCRAM), for testing the service the way production connects:

    python ops/kafka/kafkalocal.py --data-dir /tmp/kafka-secure start --secure [--user NAME]...
    eval "$(python ops/kafka/kafkalocal.py --data-dir /tmp/kafka-secure env)"   # KAFKA_* for the service
    zendesk-stream topics apply --replication-factor 1

`--secure` adds a SASL_SSL listener on each node (its own port, after the PLAINTEXT and controller
ports) with SCRAM-SHA-256 and SCRAM-SHA-512; PLAINTEXT stays open on 127.0.0.1 for the inter-broker and
controller traffic and for setup. The SCRAM users (default: one, `stream`) are created when the
storage is formatted, each for both mechanisms, with random passwords kept in
`<data-dir>/secure/users.properties` (mode 0600). TLS: the JDK's keytool makes a self-signed CA and a
broker certificate for 127.0.0.1 and localhost; the broker reads a PKCS12 keystore, clients trust
`<data-dir>/secure/ca.pem` (librdkafka's `ssl.ca.location`). No authorizer: any authenticated user may
do anything. `env [--user NAME] [--mechanism SCRAM-SHA-256]` prints the service's settings, password
included; `bootstrap --secure` only the SASL_SSL servers. Restarts keep the secure listener.

    python ops/kafka/kafkalocal.py start [--nodes 1|3] [--base-port 9092] [--data-dir DIR] [--secure]
    python ops/kafka/kafkalocal.py stop [--node N]        # all nodes, or one (fault tests)
    python ops/kafka/kafkalocal.py start --node N         # bring one node back, also right after kill -9
    python ops/kafka/kafkalocal.py status                 # exit 0 when every node runs, 3 otherwise
    python ops/kafka/kafkalocal.py bootstrap [--secure]   # prints the bootstrap servers
    python ops/kafka/kafkalocal.py env [--user NAME]      # KAFKA_* settings of the SASL_SSL listener
    python ops/kafka/kafkalocal.py fetch                  # only resolve the jars into the cache

The broker jars (org.apache.kafka:kafka_2.13 with its dependencies and a log4j2 binding) are resolved
from Maven Central by `mvn` into a cache outside the repository (`$ZS_KAFKA_CACHE`, default
`~/.cache/zendesk-stream/kafka/<version>`), then run on the installed Java 17. Every node is both broker
and controller; node i (0-based) of n listens on base-port + 2i (clients), base-port + 2i + 1 (controller)
and, with --secure, base-port + 2n + i (SASL_SSL clients).
All state lives under the data directory (default `~/.local/state/zendesk-stream/kafka`), which this
tool owns: `start` twice is harmless, and `stop` leaves the data for the next `start`.

Standard library only, so it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
KAFKA_VERSION = "4.4.0"
READY_LINE = "Kafka Server started"
DEFAULT_BASE_PORT = 9092
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_USERS = ("stream",)


class LauncherError(Exception):
    """A problem the operator can fix; printed as one line."""


def default_cache() -> Path:
    root = os.environ.get("ZS_KAFKA_CACHE") or str(Path.home() / ".cache" / "zendesk-stream" / "kafka")
    return Path(root) / KAFKA_VERSION


def default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("ZS_KAFKA_DATA") or Path(state) / "zendesk-stream" / "kafka")


# ---------------------------------------------------------------------------------------------- jars


def ensure_jars(cache: Path) -> Path:
    """Resolve the broker's jars into `cache/libs` once; later calls only check the marker."""
    libs = cache / "libs"
    marker = cache / "resolved"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise LauncherError("mvn not found: Maven is needed once to fetch the Kafka jars")
    staging = cache / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise LauncherError("resolving the Kafka jars with Maven failed: " + " | ".join(tail))
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    marker.write_text(KAFKA_VERSION + "\n")
    return libs


# ------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Node:
    index: int  # 0-based
    client_port: int
    controller_port: int
    home: Path
    secure_port: int | None = None  # the SASL_SSL listener of a --secure cluster

    @property
    def node_id(self) -> int:
        return self.index + 1

    @property
    def log_dir(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def server_log(self) -> Path:
        return self.home / "server.out"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def ports(self) -> tuple[int, ...]:
        extra = () if self.secure_port is None else (self.secure_port,)
        return (self.client_port, self.controller_port, *extra)


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    nodes: tuple[Node, ...]
    secure: bool = False

    @classmethod
    def layout(cls, data_dir: Path, node_count: int, base_port: int, *, secure: bool = False) -> Cluster:
        nodes = tuple(
            Node(
                index=i,
                client_port=base_port + 2 * i,
                controller_port=base_port + 2 * i + 1,
                home=data_dir / f"node-{i + 1}",
                secure_port=base_port + 2 * node_count + i if secure else None,
            )
            for i in range(node_count)
        )
        return cls(data_dir=data_dir, nodes=nodes, secure=secure)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def access(self) -> SecureAccess | None:
        """Bootstrap, CA and SCRAM users of the SASL_SSL listener; None for a plaintext cluster."""
        if not self.secure:
            return None
        return SecureAccess(
            bootstrap=",".join(f"127.0.0.1:{node.secure_port}" for node in self.nodes),
            ca_path=secure_dir(self.data_dir) / "ca.pem",
            users=read_properties(secure_dir(self.data_dir) / "users.properties"),
        )

    @property
    def voters(self) -> str:
        return ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)


def layout_file(data_dir: Path) -> Path:
    return data_dir / "cluster.properties"


@dataclass(frozen=True)
class SavedLayout:
    nodes: int
    base_port: int
    cluster_id: str
    secure: bool


def save_layout(cluster: Cluster, base_port: int, cluster_id: str) -> None:
    layout_file(cluster.data_dir).write_text(
        f"nodes={len(cluster.nodes)}\nbase_port={base_port}\ncluster_id={cluster_id}\n"
        f"secure={str(cluster.secure).lower()}\n"
    )


def read_properties(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def load_layout(data_dir: Path) -> SavedLayout | None:
    path = layout_file(data_dir)
    if not path.exists():
        return None
    values = read_properties(path)
    return SavedLayout(
        nodes=int(values["nodes"]),
        base_port=int(values["base_port"]),
        cluster_id=values["cluster_id"],
        secure=values.get("secure") == "true",  # files written before --secure existed: plaintext
    )


def new_cluster_id() -> str:
    """Like Kafka's Uuid.randomUuid: URL-safe base64, never starting with '-' (it would read as a flag)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


# ----------------------------------------------------------------------------------------- security


@dataclass(frozen=True)
class SecureAccess:
    """How clients reach a --secure cluster: SASL_SSL, any user with either SCRAM mechanism."""

    bootstrap: str
    ca_path: Path
    users: Mapping[str, str] = field(repr=False)  # name -> password: never in a repr or a log
    mechanisms: tuple[str, ...] = SCRAM_MECHANISMS

    def client_config(self, user: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """librdkafka settings for `user` (confluent-kafka's Producer, Consumer, AdminClient)."""
        if user not in self.users:
            raise LauncherError(f"no SCRAM user {user!r}; the users are {', '.join(self.users)}")
        if mechanism not in self.mechanisms:
            raise LauncherError(f"mechanism {mechanism!r}: expected one of {', '.join(self.mechanisms)}")
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": self.users[user],
            "ssl.ca.location": str(self.ca_path),
        }

    def service_env(self, user: str, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """The same as zendesk-stream's environment (`KAFKA_X_Y` is librdkafka's `x.y`)."""
        config = self.client_config(user, mechanism)
        return {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in config.items()}


SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
# What `kafka-storage format --add-scram 'SCRAM-SHA-256=[name=N,password=P]'` takes without quoting.
_SCRAM_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SCRAM_PASSWORD = re.compile(r"^[A-Za-z0-9._-]{8,128}$")


def secure_dir(data_dir: Path) -> Path:
    return data_dir / "secure"


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read: it holds passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that exists
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def new_password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(24))


def ensure_secure_material(data_dir: Path, users: Mapping[str, str | None] | None) -> None:
    """Once per data directory: the TLS keystore and CA certificate, and the SCRAM users' passwords.

    `users` maps names to passwords (None: a random one); None means the default users. SCRAM users
    are created when the storage is formatted, so an existing directory keeps its own."""
    target = secure_dir(data_dir)
    if target.exists():  # complete: it appears by a rename once everything in it was written
        if users is not None:
            saved = read_properties(target / "users.properties")
            if set(users) != set(saved) or any(pw not in (None, saved[u]) for u, pw in users.items()):
                raise LauncherError(
                    f"{data_dir} was formatted with the SCRAM users {', '.join(saved)}; users are "
                    "created with the cluster: use another --data-dir"
                )
        return
    wanted = {
        name: password or new_password() for name, password in (users or dict.fromkeys(DEFAULT_USERS)).items()
    }
    for name, password in wanted.items():
        if not _SCRAM_NAME.match(name):
            raise LauncherError(f"SCRAM user name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if not _SCRAM_PASSWORD.match(password):
            raise LauncherError(
                f"the password of SCRAM user {name}: use 8-128 letters, digits, '.', '_' or '-'"
            )
    staging = data_dir / "secure.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    write_private(staging / "keystore.password", make_tls(staging) + "\n")
    write_private(staging / "users.properties", "".join(f"{u}={pw}\n" for u, pw in wanted.items()))
    staging.rename(target)


def make_tls(directory: Path) -> str:
    """A throw-away CA and a broker certificate it signs for 127.0.0.1 and localhost, made with the
    JDK's keytool: `broker.p12` (PKCS12, the broker's keystore, with the chain) and `ca.pem` (what
    clients trust). The CA's key is deleted. Returns the keystore password."""
    if shutil.which("keytool") is None:
        raise LauncherError("keytool not found: the JDK's keytool makes the TLS certificates")
    store_pass = secrets.token_hex(16)
    env = {**os.environ, "ZS_CA_PASS": secrets.token_hex(16), "ZS_STORE_PASS": store_pass}
    ca, broker = directory / "ca.p12", directory / "broker.p12"
    csr, signed, chain = directory / "broker.csr", directory / "broker.pem", directory / "chain.pem"
    ec_key = ["-keyalg", "EC", "-groupname", "secp256r1", "-storetype", "PKCS12"]
    in_ca = ["-keystore", str(ca), "-storepass:env", "ZS_CA_PASS"]
    in_broker = ["-keystore", str(broker), "-storepass:env", "ZS_STORE_PASS"]
    # fmt: off
    make_ca = ["-genkeypair", "-alias", "ca", *ec_key, "-dname", "CN=kafkalocal CA", "-ext", "bc:c",
               "-validity", "3650", *in_ca]
    export_ca = ["-exportcert", "-rfc", "-alias", "ca", *in_ca, "-file", str(directory / "ca.pem")]
    make_key = ["-genkeypair", "-alias", "broker", *ec_key, "-dname", "CN=localhost", "-validity", "825",
                *in_broker]
    request = ["-certreq", "-alias", "broker", *in_broker, "-file", str(csr)]
    sign = ["-gencert", "-alias", "ca", *in_ca, "-infile", str(csr), "-outfile", str(signed), "-rfc",
            "-validity", "825", "-ext", "SAN=ip:127.0.0.1,dns:localhost", "-ext", "KU=digitalSignature",
            "-ext", "EKU=serverAuth"]
    install = ["-importcert", "-alias", "broker", *in_broker, "-file", str(chain), "-noprompt"]
    # fmt: on
    # Every step is a JVM start, about a second on 2 busy cores: the CA's and the broker's steps run
    # side by side, on the client compiler and serial GC.
    for stage in ([make_ca, make_key], [export_ca, request], [sign], [install]):
        if stage[0] is install:
            chain.write_text(signed.read_text() + (directory / "ca.pem").read_text())
        run_keytool(stage, env)
    for leftover in (ca, csr, signed, chain):
        leftover.unlink()
    return store_pass


def run_keytool(steps: list[list[str]], env: dict[str, str]) -> None:
    """Run keytool once per step, all at the same time; raise naming the first step that failed."""
    keytool = ["keytool", "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]
    running = [
        (step, subprocess.Popen([*keytool, *step], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env))
        for step in steps
    ]
    failures = []
    for step, proc in running:
        output = proc.communicate()[0].decode(errors="replace").strip()
        if proc.returncode != 0:
            failures.append(f"keytool {step[0]} failed: {output[-300:] or 'no output'}")
    if failures:
        raise LauncherError(failures[0])


def scram_arguments(data_dir: Path) -> list[str]:
    users = read_properties(secure_dir(data_dir) / "users.properties")
    return [
        argument
        for name, password in users.items()
        for mechanism in SCRAM_MECHANISMS
        for argument in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
    ]


def server_properties(cluster: Cluster, node: Node) -> str:
    replicas = min(3, len(cluster.nodes))
    min_isr = 2 if replicas == 3 else 1
    listeners = f"PLAINTEXT://127.0.0.1:{node.client_port},CONTROLLER://127.0.0.1:{node.controller_port}"
    advertised = f"PLAINTEXT://127.0.0.1:{node.client_port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if node.secure_port is not None:
        listeners += f",SASL_SSL://127.0.0.1:{node.secure_port}"
        advertised += f",SASL_SSL://127.0.0.1:{node.secure_port}"
        protocols += ",SASL_SSL:SASL_SSL"
    props: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": cluster.voters,
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": node.log_dir,
        # Sized for a 2-core machine: few threads, small internal topics.
        "num.network.threads": 2,
        "num.io.threads": 2,
        "background.threads": 2,
        "num.replica.fetchers": 1,
        "num.recovery.threads.per.data.dir": 1,
        "log.cleaner.threads": 1,
        "offsets.topic.num.partitions": 8,
        "transaction.state.log.num.partitions": 4,
        "offsets.topic.replication.factor": replicas,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": replicas,
        "min.insync.replicas": 1,
        "num.partitions": 1,
        # Topics come from `zendesk-stream topics apply` or the tests, never from a typo.
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        # A node restarted after a crash can register only once its dead incarnation's session expired
        # (DUPLICATE_BROKER_REGISTRATION until then): 4 s instead of 9 s, heartbeats four times as often.
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 4000,
        "log.segment.bytes": 64 * 1024 * 1024,
    }
    if node.secure_port is not None:
        tls = secure_dir(cluster.data_dir)
        props |= {
            "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            **{f"listener.name.sasl_ssl.{m.lower()}.sasl.jaas.config": SCRAM_LOGIN for m in SCRAM_MECHANISMS},
            "listener.name.sasl_ssl.ssl.keystore.type": "PKCS12",
            "listener.name.sasl_ssl.ssl.keystore.location": tls / "broker.p12",
            "listener.name.sasl_ssl.ssl.keystore.password": (tls / "keystore.password").read_text().strip(),
            "listener.name.sasl_ssl.ssl.client.auth": "none",
        }
    return "".join(f"{key}={value}\n" for key, value in props.items())


LOG4J2 = """\
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def java_command(libs: Path, node: Node, main_class: str, *args: str) -> list[str]:
    heap = os.environ.get("ZS_KAFKA_HEAP", "512m")
    return [
        "java",
        "-Xms128m",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",  # small heaps on 2 cores: no concurrent GC threads competing with the tests
        "-XX:CICompilerCount=2",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.home / 'log4j2.properties'}",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


# ---------------------------------------------------------------------------------------- processes


def recorded_pid(node: Node) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (R, S, D, Z...), None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def running_pid(node: Node) -> int | None:
    pid = recorded_pid(node)
    if pid is None or process_state(pid) in (None, "Z", "X"):
        return None
    cmdline = command_line(pid)
    return pid if "kafka.Kafka" in cmdline and str(node.home) in cmdline else None


def process_gone(pid: int) -> bool:
    """Whether the process has released everything: no such process, or a zombie all of whose threads
    have exited. A group leader turns zombie before its other threads are done, and the last thread
    out closes the files, listening sockets included."""
    try:
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
        )
    except (FileNotFoundError, ProcessLookupError):
        return True
    state = status.get("State", "").strip()[:1]
    return state == "X" or (state == "Z" and int(status.get("Threads", "1")) <= 1)


def wait_exited(node: Node, deadline_s: float = 10.0) -> None:
    """Wait until the node's last process has released everything it held.

    A JVM killed a moment ago drops its command line within milliseconds (so `running_pid` no longer
    sees it) but closes its files, listening sockets included, only some tens of milliseconds later:
    a restart in between would find its own ports taken."""
    pid = recorded_pid(node)
    if pid is None:
        return
    deadline = time.monotonic() + deadline_s
    while not process_gone(pid) and time.monotonic() < deadline:
        cmdline = command_line(pid)
        if cmdline and "kafka.Kafka" not in cmdline:
            return  # the pid now belongs to another program
        time.sleep(0.02)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def prepare_node(libs: Path, cluster: Cluster, node: Node, cluster_id: str) -> None:
    node.home.mkdir(parents=True, exist_ok=True)
    write_private(node.home / "server.properties", server_properties(cluster, node))  # keystore password
    (node.home / "log4j2.properties").write_text(LOG4J2.format(log=node.home / "kafka.log"))
    if (node.log_dir / "meta.properties").exists():
        return
    scram = scram_arguments(cluster.data_dir) if cluster.secure else []
    cmd = java_command(
        libs, node, "kafka.tools.StorageTool", "format", "-t", cluster_id,
        "-c", str(node.home / "server.properties"), "--ignore-formatted", *scram,
    )  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LauncherError(f"formatting node {node.node_id} failed: {result.stderr.strip()[-300:]}")


def port_free(port: int) -> bool:
    """Whether the broker could listen on the port now (a connect test misses ports held by outgoing
    sockets). SO_REUSEADDR as the JVM sets it for every server socket: connections left in TIME-WAIT
    by a node that was killed do not stop it from listening again, so they must not stop us either."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(nodes: int = 1, *, start: int | None = None, secure: bool = False) -> int:
    """A base port whose 2 x `nodes` ports (3 x `nodes` when `secure`) are all free now: scanning up from
    `start`, else from ports the kernel hands out (tests running side by side)."""
    width = (3 if secure else 2) * nodes
    candidates: list[int] = list(range(start, start + 200 * width, width)) if start else []
    for _ in range(200 if not start else 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            candidates.append(int(probe.getsockname()[1]))
    for port in candidates:
        if port + width < 65_536 and all(port_free(p) for p in range(port, port + width)):
            return port
    raise LauncherError(f"no {width} free consecutive ports found on 127.0.0.1")


def spawn_node(libs: Path, node: Node) -> subprocess.Popen[bytes]:
    wait_exited(node)
    for port in node.ports:
        if not port_free(port):
            raise LauncherError(f"port {port} is already in use; choose another --base-port")
    # Readiness and failure reasons are read from kafka.log: only this run's lines may count.
    log = node.home / "kafka.log"
    if log.exists():
        log.replace(node.home / "kafka.log.previous")
    cmd = java_command(libs, node, "kafka.Kafka", str(node.home / "server.properties"))
    with node.server_log.open("w") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    node.pid_file.write_text(f"{proc.pid}\n")
    _CHILDREN[proc.pid] = proc
    return proc


# Brokers this process started, kept until stopped so they are reaped (not left as zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def node_ready(node: Node) -> bool:
    log = node.home / "kafka.log"
    if not log.exists() or not port_open(node.client_port):
        return False
    with log.open(errors="replace") as handle:
        return any(READY_LINE in line for line in handle)


def wait_ready(spawned: dict[Node, subprocess.Popen[bytes]], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    waiting = list(spawned)
    while waiting:
        for node in list(waiting):
            if spawned[node].poll() is not None:
                raise LauncherError(
                    f"node {node.node_id} exited during start-up: {failure_reason(node)} (see {node.home})"
                )
            if node_ready(node):
                waiting.remove(node)
        if waiting and time.monotonic() > deadline:
            ids = ", ".join(str(n.node_id) for n in waiting)
            logs = cluster_logs(waiting)
            raise LauncherError(f"node(s) {ids} not ready after {deadline_s:.0f}s; see {logs}")
        if waiting:
            time.sleep(0.2)


def failure_reason(node: Node) -> str:
    """The innermost cause Kafka logged, else the end of its console output."""
    log = node.home / "kafka.log"
    causes = [
        line.strip()
        for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
        if line.startswith("Caused by:")
    ]
    if causes:
        return causes[-1].removeprefix("Caused by: ")
    out = node.server_log.read_text(errors="replace").strip() if node.server_log.exists() else ""
    return out[-300:] or "no output"


def cluster_logs(nodes: list[Node]) -> str:
    return ", ".join(str(n.home / "kafka.log") for n in nodes)


def stop_node(node: Node, grace_s: float = 30.0) -> bool:
    """Stop the node (SIGTERM, SIGKILL after `grace_s`); True when it was running. Returns once its
    process is gone, so its ports are free for the next `start`."""
    pid = running_pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while running_pid(node) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if running_pid(node) is not None:
            os.kill(pid, signal.SIGKILL)
    if pid is not None and pid in _CHILDREN:  # ours: reap it, or it lingers as a zombie
        _CHILDREN.pop(pid).wait(timeout=grace_s)
    wait_exited(node)
    node.pid_file.unlink(missing_ok=True)
    return pid is not None


# ------------------------------------------------------------------------------------------ commands


def resolve_cluster(
    data_dir: Path, nodes: int | None, base_port: int | None, secure: bool | None
) -> tuple[Cluster, str]:
    saved = load_layout(data_dir)
    if saved is not None:
        if nodes not in (None, saved.nodes) or base_port not in (None, saved.base_port):
            raise LauncherError(
                f"{data_dir} holds a {saved.nodes}-node cluster on base port {saved.base_port}; "
                "stop it and remove the directory, or use another --data-dir"
            )
        if secure not in (None, saved.secure):
            kind = "a --secure" if saved.secure else "a plaintext"
            raise LauncherError(
                f"{data_dir} holds {kind} cluster (SCRAM users are created with the cluster); "
                "use another --data-dir"
            )
        layout = Cluster.layout(data_dir, saved.nodes, saved.base_port, secure=saved.secure)
        return layout, saved.cluster_id
    layout = Cluster.layout(data_dir, nodes or 1, base_port or DEFAULT_BASE_PORT, secure=bool(secure))
    return layout, new_cluster_id()


def start(
    data_dir: Path,
    nodes: int | None,
    base_port: int | None,
    only: int | None,
    wait_s: float,
    *,
    secure: bool | None = None,
    users: Mapping[str, str | None] | None = None,
) -> Cluster:
    """Start the cluster in `data_dir` (only node `only`, when given) and wait until it is ready.

    `secure`: True for a SASL_SSL listener with SCRAM users (`users`: name -> password or None for a
    random one; default one user, `stream`), False for plaintext only, None for what `data_dir` holds
    (plaintext when new). The returned cluster's `access` tells clients how to connect."""
    if nodes not in (None, 1, 3):
        raise LauncherError("--nodes must be 1 or 3")
    if users is not None and secure is False:
        raise LauncherError("SCRAM users need a --secure cluster")
    libs = ensure_jars(default_cache())
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster, cluster_id = resolve_cluster(data_dir, nodes, base_port, True if users is not None else secure)
    if cluster.secure:
        ensure_secure_material(data_dir, users)
    save_layout(cluster, cluster.nodes[0].client_port, cluster_id)
    spawned = {}
    for node in cluster.nodes:
        if (only is None or node.node_id == only) and running_pid(node) is None:
            prepare_node(libs, cluster, node, cluster_id)
            spawned[node] = spawn_node(libs, node)
    wait_ready(spawned, wait_s)
    return cluster


def existing_cluster(data_dir: Path) -> Cluster:
    saved = load_layout(data_dir)
    if saved is None:
        raise LauncherError(f"no cluster in {data_dir}; run `start` first")
    return Cluster.layout(data_dir, saved.nodes, saved.base_port, secure=saved.secure)


def secure_access(cluster: Cluster) -> SecureAccess:
    if cluster.access is None:
        raise LauncherError(f"{cluster.data_dir} holds a plaintext cluster; start one with --secure")
    return cluster.access


def describe_access(access: SecureAccess, data_dir: Path) -> str:
    return (
        f"SASL_SSL ({', '.join(access.mechanisms)}): {access.bootstrap}; CA certificate: {access.ca_path}; "
        f"SCRAM users: {', '.join(access.users)} (passwords in {secure_dir(data_dir) / 'users.properties'})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kafkalocal", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start the cluster (or one node of it) and wait until ready")
    p_start.add_argument("--nodes", type=int, choices=(1, 3), help="1 (default) or 3 nodes")
    p_start.add_argument("--base-port", type=int, help=f"first client port (default {DEFAULT_BASE_PORT})")
    p_start.add_argument("--node", type=int, help="start only this node id (1-based)")
    p_start.add_argument("--wait", type=float, default=120.0, help="seconds to wait for readiness")
    p_start.add_argument(
        "--secure", action="store_true", help="add a SASL_SSL listener with SCRAM users (new clusters)"
    )
    p_start.add_argument(
        "--user", action="append", metavar="NAME", help="a SCRAM user of a new --secure cluster (repeat)"
    )
    p_stop = sub.add_parser("stop", help="stop every node, or one")
    p_stop.add_argument("--node", type=int, help="stop only this node id (1-based)")
    sub.add_parser("status", help="show which nodes run; exit 3 unless all do")
    p_boot = sub.add_parser("bootstrap", help="print the bootstrap servers")
    p_boot.add_argument("--secure", action="store_true", help="those of the SASL_SSL listener")
    p_env = sub.add_parser("env", help="print the KAFKA_* settings of the SASL_SSL listener, for eval")
    p_env.add_argument("--user", help="SCRAM user (default: the first)")
    p_env.add_argument("--mechanism", choices=SCRAM_MECHANISMS, default="SCRAM-SHA-512")
    sub.add_parser("fetch", help="resolve the Kafka jars into the cache and print where")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir: Path = args.data_dir.expanduser().resolve()
    try:
        if args.command == "fetch":
            print(ensure_jars(default_cache()))
        elif args.command == "start":
            began = time.monotonic()
            users = dict.fromkeys(args.user) if args.user else None
            secure = True if args.secure else None
            cluster = start(
                data_dir, args.nodes, args.base_port, args.node, args.wait, secure=secure, users=users
            )
            print(f"kafka ready in {time.monotonic() - began:.1f}s: {cluster.bootstrap}", file=sys.stderr)
            if cluster.access is not None:
                print(describe_access(cluster.access, data_dir), file=sys.stderr)
            print(cluster.bootstrap)
        elif args.command == "stop":
            cluster = existing_cluster(data_dir)
            for node in cluster.nodes:
                if args.node is None or node.node_id == args.node:
                    stopped = stop_node(node)
                    print(f"node {node.node_id}: {'stopped' if stopped else 'was not running'}")
        elif args.command == "status":
            cluster = existing_cluster(data_dir)
            up = [running_pid(node) is not None for node in cluster.nodes]
            for node, running in zip(cluster.nodes, up, strict=True):
                print(f"node {node.node_id} {node.bootstrap}: {'running' if running else 'stopped'}")
            print(f"bootstrap: {cluster.bootstrap}")
            if cluster.access is not None:
                print(describe_access(cluster.access, data_dir))
            return 0 if all(up) else 3
        elif args.command == "bootstrap":
            cluster = existing_cluster(data_dir)
            print(secure_access(cluster).bootstrap if args.secure else cluster.bootstrap)
        elif args.command == "env":
            access = secure_access(existing_cluster(data_dir))
            user = args.user or next(iter(access.users))
            for name, value in access.service_env(user, args.mechanism).items():
                print(f"export {name}={shlex.quote(value)}")
    except LauncherError as err:
        print(f"kafkalocal: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

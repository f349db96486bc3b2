#!/usr/bin/env python3
"""A real Confluent-compatible schema registry on this machine, without Docker: Apicurio Registry.

    python ops/registry/registry.py start [--port 8081] [--data-dir DIR] [--user NAME] [--wait S]
    python ops/registry/registry.py stop
    python ops/registry/registry.py status                # exit 0 when it runs, 3 otherwise
    python ops/registry/registry.py url                   # prints the URL to use as SCHEMA_REGISTRY_URL
    python ops/registry/registry.py fetch                 # only resolve the distribution into the cache

Apicurio Registry publishes its ready-to-run Quarkus distribution to Maven Central as
io.apicurio:apicurio-registry-app:<version>:tar.gz:all. `mvn` resolves and unpacks it once into a cache
outside the repository (`$ZS_REGISTRY_CACHE`, default `~/.cache/zendesk-stream/registry/<version>`).
Apicurio 3.x is built for Java 21: the launcher picks a JDK of 21 or later (`$ZS_REGISTRY_JAVA`, then
`$JAVA_HOME`, `java` on the PATH, the JDKs under /usr/lib/jvm), not the Java 17 that runs Kafka.

The Confluent-compatible API is served under /apis/ccompat/v7 on 127.0.0.1:<port>; that URL is what
`start` and `url` print. Schemas live in an H2 database file under the data directory (default
`~/.local/state/zendesk-stream/registry`), so schema ids in records already on a topic still resolve
after a restart. With `--user NAME` (password from `$ZS_REGISTRY_PASSWORD`) every request needs HTTP
basic auth with those credentials; without it the registry is open to anything on loopback.

Standard library only, so it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import argparse
import base64
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
APICURIO_VERSION = "3.3.3"
MIN_JAVA = 21
CCOMPAT_PATH = "/apis/ccompat/v7"
DEFAULT_PORT = 8081  # the Confluent registry's usual port
HOME_FLAG = "-Dzs.registry.home="  # marks our JVMs, so `stop` never signals someone else's process
USER_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class LauncherError(Exception):
    """A problem the operator can fix; printed as one line."""


def default_cache() -> Path:
    root = os.environ.get("ZS_REGISTRY_CACHE") or str(Path.home() / ".cache" / "zendesk-stream" / "registry")
    return Path(root) / APICURIO_VERSION


def default_data_dir() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("ZS_REGISTRY_DATA") or Path(state) / "zendesk-stream" / "registry")


# ------------------------------------------------------------------------------------- distribution


def ensure_app(cache: Path) -> Path:
    """Unpack the distribution into `cache/app` once; later calls only check the marker."""
    app = cache / "app"
    marker = cache / "resolved"
    if marker.exists() and (app / "quarkus-run.jar").exists():
        return app
    if shutil.which("mvn") is None:
        raise LauncherError("mvn not found: Maven is needed once to fetch Apicurio Registry")
    staging = cache / "app.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:unpack",
        f"-Dapicurio.version={APICURIO_VERSION}",
        f"-Dregistry.output={staging}", f"-Dregistry.markers={cache / 'markers'}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not (staging / "quarkus-run.jar").exists():
        tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise LauncherError("resolving Apicurio Registry with Maven failed: " + " | ".join(tail))
    shutil.rmtree(app, ignore_errors=True)
    staging.rename(app)
    shutil.rmtree(cache / "markers", ignore_errors=True)
    marker.write_text(APICURIO_VERSION + "\n")
    return app


# --------------------------------------------------------------------------------------------- java


def java_major(java: str) -> int | None:
    """The feature release of a `java` binary (8 for 1.8, 25 for 25.0.3), None when it does not run."""
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if result.returncode != 0 or found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_candidates() -> list[str]:
    named: list[str] = []
    configured = os.environ.get("ZS_REGISTRY_JAVA")
    if configured:
        path = Path(configured)
        named.append(str(path / "bin" / "java") if path.is_dir() else configured)
    if os.environ.get("JAVA_HOME"):
        named.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        named.append(on_path)
    named.extend(sorted(glob.glob("/usr/lib/jvm/*/bin/java")))
    unique: list[str] = []
    for candidate in named:
        real = os.path.realpath(candidate)
        if os.access(real, os.X_OK) and real not in unique:
            unique.append(real)
    return unique


def find_java() -> str:
    """The first JDK of at least MIN_JAVA, in the order of java_candidates()."""
    seen: list[str] = []
    for java in java_candidates():
        major = java_major(java)
        if major is not None and major >= MIN_JAVA:
            return java
        seen.append(f"{java} ({major or 'does not run'})")
    raise LauncherError(
        f"Apicurio Registry {APICURIO_VERSION} needs Java {MIN_JAVA} or later; found "
        + (", ".join(seen) or "no java")
        + ". Install one (e.g. a Temurin 21+ JDK) or point ZS_REGISTRY_JAVA at it"
    )


# ------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not USER_PATTERN.fullmatch(self.user):
            raise LauncherError("the user name may hold only letters, digits, '_' and '-' (at most 64)")
        # Quarkus expands ${...} in every config value, and .properties files have escapes of their own
        # and drop a value's leading blanks: refusing those is simpler than escaping for both layers.
        password = self.password
        if not password.isprintable() or password != password.lstrip() or any(c in password for c in "$\\"):
            raise LauncherError("the password must be printable, without '$', '\\' or leading blanks")
        if not password:
            raise LauncherError("the password may not be empty")

    @property
    def header(self) -> str:
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return f"Basic {token}"


@dataclass(frozen=True)
class Registry:
    home: Path
    port: int

    @property
    def url(self) -> str:
        """The base URL of the Confluent-compatible API: what SCHEMA_REGISTRY_URL should say."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def pid_file(self) -> Path:
        return self.home / "registry.pid"

    @property
    def log(self) -> Path:
        return self.home / "registry.log"

    @property
    def config_file(self) -> Path:
        # Quarkus reads $PWD/config/application.properties over the application's own (ordinal 260).
        return self.home / "config" / "application.properties"

    @property
    def layout_file(self) -> Path:
        return self.home / "launcher.properties"


def save_layout(registry: Registry, credentials: Credentials | None) -> None:
    user = credentials.user if credentials else ""
    registry.layout_file.write_text(f"port={registry.port}\nuser={user}\n")


def load_layout(home: Path) -> tuple[int, str] | None:
    path = home / "launcher.properties"
    if not path.exists():
        return None
    values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return int(values["port"]), values.get("user", "")


def config_text(registry: Registry, credentials: Credentials | None) -> str:
    home = registry.home
    if "$" in str(home) or "\\" in str(home):
        raise LauncherError(f"the data directory's path may not contain '$' or '\\': {home}")
    props: dict[str, object] = {
        "quarkus.http.host": "127.0.0.1",
        "quarkus.http.port": registry.port,
        # Apicurio's build fixes the management interface (health, metrics) on; nothing here uses it,
        # so it takes any free port rather than a second one to coordinate.
        "quarkus.management.host": "127.0.0.1",
        "quarkus.management.port": 0,
        "apicurio.storage.kind": "sql",
        "apicurio.storage.sql.kind": "h2",
        "apicurio.datasource.url": f"jdbc:h2:file:{home / 'h2' / 'registry'}",
        "apicurio.datasource.jdbc.initial-size": 2,
        "apicurio.datasource.jdbc.min-size": 2,
        "apicurio.datasource.jdbc.max-size": 8,
        "apicurio.storage.snapshot.location": home / "tmp",
        "apicurio.import.work-dir": home / "tmp",
        "quarkus.otel.sdk.disabled": "true",
    }
    if credentials is not None:
        props |= {
            # Apicurio reads this at run time to build its authentication chain; Quarkus logs that the
            # property is "build time fixed", but the chain is built and requests without it get 401.
            "quarkus.http.auth.basic": "true",
            "quarkus.security.users.embedded.enabled": "true",
            "quarkus.security.users.embedded.plain-text": "true",
            f"quarkus.security.users.embedded.users.{credentials.user}": credentials.password,
            f"quarkus.security.users.embedded.roles.{credentials.user}": "sr-admin",
            "apicurio.auth.anonymous-read-access.enabled": "false",
        }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def write_config(registry: Registry, credentials: Credentials | None) -> None:
    registry.config_file.parent.mkdir(parents=True, exist_ok=True)
    (registry.home / "tmp").mkdir(exist_ok=True)
    fd = os.open(registry.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:  # the password is in it: owner-only
        handle.write(config_text(registry, credentials))


def java_command(java: str, app: Path, registry: Registry) -> list[str]:
    heap = os.environ.get("ZS_REGISTRY_HEAP", "256m")
    return [
        java,
        "-Xms64m",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",  # small heap on 2 cores: no concurrent GC threads competing with the tests
        "-XX:TieredStopAtLevel=1",  # C1 only: a test registry starts sooner and needs no peak speed
        f"-Djava.io.tmpdir={registry.home / 'tmp'}",
        f"{HOME_FLAG}{registry.home}",
        "-jar",
        str(app / "quarkus-run.jar"),
    ]


# ---------------------------------------------------------------------------------------- processes


def running_pid(registry: Registry) -> int | None:
    try:
        pid = int(registry.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return None
    return pid if f"{HOME_FLAG}{registry.home}" in cmdline else None


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port free now, from those the kernel hands out (tests running side by side)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def probe(registry: Registry, credentials: Credentials | None) -> int | None:
    """The HTTP status of GET <url>/subjects, None while nothing answers."""
    request = urllib.request.Request(registry.url + "/subjects")
    if credentials is not None:
        request.add_header("Authorization", credentials.header)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return None


def failure_reason(registry: Registry) -> str:
    """The innermost cause the registry logged, else its first ERROR line, else the end of its output."""
    text = registry.log.read_text(errors="replace") if registry.log.exists() else ""
    lines = [line.strip() for line in text.splitlines()]
    causes = [line for line in lines if line.startswith("Caused by:")]
    errors = [line for line in lines if " ERROR " in f" {line}"]
    if causes:
        return causes[-1][:400]
    if errors:
        return errors[0][:400]
    return text.strip()[-300:] or "no output"


def wait_ready(
    registry: Registry, proc: subprocess.Popen[bytes], credentials: Credentials | None, wait_s: float
) -> None:
    deadline = time.monotonic() + wait_s
    status: int | None = None
    while True:
        if proc.poll() is not None:
            raise LauncherError(f"the registry exited during start-up: {failure_reason(registry)}")
        status = probe(registry, credentials)
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise LauncherError(
                f"the registry did not answer {registry.url} within {wait_s:.0f}s "
                f"(last status: {status or 'no answer'}); see {registry.log}"
            )
        time.sleep(0.2)


def start(
    home: Path, port: int | None, *, credentials: Credentials | None = None, wait_s: float = 120.0
) -> Registry:
    """Start the registry and wait until its Confluent-compatible API answers; harmless when it runs."""
    home.mkdir(parents=True, exist_ok=True)
    saved = load_layout(home)
    if saved is not None:
        registry = Registry(home=home, port=saved[0])
        if running_pid(registry) is not None:
            if port not in (None, saved[0]) or (credentials.user if credentials else "") != saved[1]:
                raise LauncherError(
                    f"a registry already runs from {home} on port {saved[0]} with other settings; "
                    "stop it first"
                )
            return registry
    registry = Registry(home=home, port=port or (saved[0] if saved else DEFAULT_PORT))
    app = ensure_app(default_cache())
    java = find_java()
    if not port_free(registry.port):
        raise LauncherError(f"port {registry.port} is already in use; choose another --port")
    write_config(registry, credentials)
    save_layout(registry, credentials)
    out = registry.log.open("w")
    proc = subprocess.Popen(
        java_command(java, app, registry),
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    registry.pid_file.write_text(f"{proc.pid}\n")
    _CHILDREN[proc.pid] = proc
    try:
        wait_ready(registry, proc, credentials, wait_s)
    except LauncherError:
        stop(home)
        raise
    return registry


# Registries this process started, kept until stopped so they are reaped (not left as zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def existing(home: Path) -> Registry:
    saved = load_layout(home)
    if saved is None:
        raise LauncherError(f"no registry in {home}; run `start` first")
    return Registry(home=home, port=saved[0])


def stop(home: Path, grace_s: float = 30.0) -> bool:
    """Stop the registry of `home` (SIGTERM, then SIGKILL after `grace_s`); False when none ran."""
    saved = load_layout(home)
    if saved is None:
        return False
    registry = Registry(home=home, port=saved[0])
    pid = running_pid(registry)
    if pid is None:
        registry.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while running_pid(registry) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if running_pid(registry) is not None:
        os.kill(pid, signal.SIGKILL)
        while running_pid(registry) is not None:
            time.sleep(0.05)
    if pid in _CHILDREN:
        _CHILDREN.pop(pid).wait(timeout=grace_s)
    registry.pid_file.unlink(missing_ok=True)
    return True


# ------------------------------------------------------------------------------------------ commands


def credentials_from(user: str | None) -> Credentials | None:
    if user is None:
        return None
    password = os.environ.get("ZS_REGISTRY_PASSWORD")
    if not password:
        raise LauncherError("--user needs the password in ZS_REGISTRY_PASSWORD")
    return Credentials(user=user, password=password)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(), help="state directory")
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start the registry and wait until its API answers")
    p_start.add_argument("--port", type=int, help=f"HTTP port on 127.0.0.1 (default {DEFAULT_PORT})")
    p_start.add_argument("--user", help="require HTTP basic auth as this user ($ZS_REGISTRY_PASSWORD)")
    p_start.add_argument("--wait", type=float, default=120.0, help="seconds to wait for readiness")
    sub.add_parser("stop", help="stop the registry")
    sub.add_parser("status", help="say whether the registry runs; exit 3 unless it does")
    sub.add_parser("url", help="print the URL to use as SCHEMA_REGISTRY_URL")
    sub.add_parser("fetch", help="resolve Apicurio Registry into the cache and print where")
    args = parser.parse_args(argv)
    home: Path = args.data_dir.expanduser().resolve()
    try:
        if args.command == "fetch":
            print(ensure_app(default_cache()))
        elif args.command == "start":
            began = time.monotonic()
            registry = start(home, args.port, credentials=credentials_from(args.user), wait_s=args.wait)
            print(f"registry ready in {time.monotonic() - began:.1f}s: {registry.url}", file=sys.stderr)
            print(registry.url)
        elif args.command == "stop":
            print("stopped" if stop(home) else "was not running")
        elif args.command == "status":
            registry = existing(home)
            running = running_pid(registry) is not None
            print(f"{registry.url}: {'running' if running else 'stopped'}")
            return 0 if running else 3
        elif args.command == "url":
            print(existing(home).url)
    except LauncherError as err:
        print(f"registry: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

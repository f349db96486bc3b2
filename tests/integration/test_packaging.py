"""The package as users install it: a wheel in a fresh virtualenv, used from outside the checkout."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from tests.support.kafka import REPO, unique_topic

pytestmark = pytest.mark.kafka


def test_every_package_of_the_source_tree_ships_in_the_wheel() -> None:
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        str(p.parent.relative_to(REPO)).replace("/", ".") for p in (REPO / "stream").rglob("__init__.py")
    }
    assert found <= declared, f"add to [tool.setuptools] packages: {sorted(found - declared)}"


def test_the_installed_wheel_finds_its_topic_definitions_outside_the_checkout(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Before: `topics file: …/site-packages/topics/topics.toml not found`, exit 2."""
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("zendesk_stream-*.whl")
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    # The wheel itself goes in without dependencies; those are read from this test's own environment
    # (a path entry, so its editable hook to the checkout is not processed).
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_", "PYTHON"))
    }
    env.update(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, STREAM_TOPIC=unique_topic("t-wheel"))

    result = subprocess.run(
        [str(fresh / "bin" / "zendesk-stream"), "topics", "apply", "--replication-factor", "1", "--dry-run"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "create " in result.stdout and "dry run: 4 change(s) not applied" in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import stream; print(stream.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert str(fresh) in where.stdout  # the wheel's copy ran, not the checkout's

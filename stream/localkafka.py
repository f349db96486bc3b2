"""The native Kafka launcher of a source checkout (ops/kafka/kafkalocal.py), loaded as a module.

The launcher is a standalone, standard-library script so that it runs before any virtualenv exists; the
demo, the test fixtures and the benchmarks load it from here rather than each on their own.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from stream.errors import ConfigError

LAUNCHER = Path(__file__).resolve().parent.parent / "ops" / "kafka" / "kafkalocal.py"


def load_launcher() -> ModuleType:
    if not LAUNCHER.exists():
        raise ConfigError(f"local Kafka needs a source checkout: {LAUNCHER} not found")
    loaded = sys.modules.get("kafkalocal")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("kafkalocal", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kafkalocal"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module

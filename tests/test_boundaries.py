"""The architecture's boundaries, checked by tools in the test run (so in CI too).

- import-linter runs the contracts in pyproject.toml: the headless core never imports
  Textual or Rich, only providers/ imports the SDKs, providers/ never imports the store,
  the simulator stands apart, the console is the top layer;
- ruff and mypy run with the settings in pyproject.toml, and must find nothing;
- SQL statements appear only under src/batchtop/store/ (the simulator aside), and Textual
  is imported only under src/batchtop/tui/: both read from the source's syntax tree, so a
  lazy import inside a function counts as much as one at the top.

Checks that wait on work in other branches are strict xfails, each naming what it waits
for: when that work lands they pass, the xfail fails, and its mark is to be removed.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "batchtop"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

def _tool(name: str) -> str:
    """The tool installed beside this Python (the test extra), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extra (pip install -e '.[test]')")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)


# -- import-linter ---------------------------------------------------------------------------

CONTRACTS = [c["id"] for c in PYPROJECT["tool"]["importlinter"]["contracts"]]


def _lint_imports(*ids: str) -> subprocess.CompletedProcess[str]:
    return _run(_tool("lint-imports"), "--no-cache", *(a for i in ids for a in ("--contract", i)))


def test_import_contracts_hold() -> None:
    """Every contract, in one run (the import graph is built once)."""
    assert "sqlite-only-in-store" in CONTRACTS and "providers-without-store" in CONTRACTS
    done = _lint_imports(*CONTRACTS)
    assert done.returncode == 0, done.stdout + done.stderr


# -- ruff and mypy ---------------------------------------------------------------------------


def test_ruff_finds_nothing() -> None:
    """Every rule selected in pyproject.toml, the import order aside (next test)."""
    done = _run(_tool("ruff"), "check", "--no-cache", "--extend-ignore", "I001", "src", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


def test_imports_are_sorted() -> None:
    done = _run(_tool("ruff"), "check", "--no-cache", "--select", "I", "src", "tests")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
def test_mypy_finds_nothing() -> None:
    """Bare `mypy`: pyproject.toml says what it checks (src/) and how strictly. In the
    slow tier (which `.ci/run` runs): from a cold cache it takes half a minute of the
    default run's five; `mypy` alone runs it at any time."""
    done = _run(_tool("mypy"))
    assert done.returncode == 0, done.stdout + done.stderr


# -- SQL only in store/, Textual only in tui/ ------------------------------------------------

SQL = re.compile(
    r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|WITH|PRAGMA|BEGIN|COMMIT|ROLLBACK|SAVEPOINT"
    r"|RELEASE|VACUUM|ANALYZE|ATTACH|DETACH)\b"
)
"""A statement's first keyword, in capitals as the code writes SQL (prose does not)."""


def _area(path: Path) -> str:
    """A subpackage's name, or a top-level module's."""
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _sources(*skip: str) -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if _area(p) not in skip)


def sql_statements(path: Path) -> list[str]:
    """`file:line: text` of each string constant that begins like an SQL statement
    (f-strings too: their literal parts are constants)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value.strip()[:60]!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)
    ]


AREAS = sorted({_area(p) for p in _sources("store", "sim")})


@pytest.mark.parametrize(
    "area",
    AREAS,
)
def test_sql_only_in_the_store(area: str) -> None:
    found = [s for p in _sources("store", "sim") if _area(p) == area for s in sql_statements(p)]
    assert not found, "SQL outside src/batchtop/store/ (add a store method instead):\n" + "\n".join(found)


_CALLS = {"execute", "executemany", "executescript"}


@pytest.mark.parametrize("area", AREAS)
def test_no_statement_is_run_outside_the_store(area: str) -> None:
    """Not even a statement built elsewhere: no `execute` call outside store/ (and sim/)."""
    found = [
        f"{p.relative_to(ROOT)}:{node.lineno}: .{node.func.attr}()"
        for p in _sources("store", "sim") if _area(p) == area
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _CALLS
    ]
    assert not found, "a statement run outside src/batchtop/store/:\n" + "\n".join(found)


def test_the_sql_finder_finds_the_stores_sql() -> None:
    """The check above is only as good as its finder: it sees the store's statements."""
    found = [s for p in SRC.joinpath("store").rglob("*.py") for s in sql_statements(p)]
    assert len(found) > 20 and any("INSERT" in s for s in found) and any("SELECT" in s for s in found)


def textual_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in ("textual", "textual_serve")]
    return found


def test_textual_only_in_the_console() -> None:
    """A command that needs the console imports it from batchtop.tui, lazily."""
    found = [s for p in _sources("tui") for s in textual_imports(p)]
    assert not found, "Textual imported outside src/batchtop/tui/:\n" + "\n".join(found)
    assert textual_imports(SRC / "tui" / "app.py"), "the finder sees the console's own imports"

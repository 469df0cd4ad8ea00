"""SQL lives in `batchtop.store` (and the simulator, which has its own state).

The engine and the CLI call typed store methods; a statement written anywhere else
would be a second place a storage backend has to be changed. Read from the source
with `ast`, so a comment or a docstring that mentions SQL does not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import batchtop

SRC = Path(batchtop.__file__).parent
SQL = re.compile(
    r"^\s*(SELECT\s.*\bFROM\b|SELECT\s+\d|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
    r"|(CREATE|DROP)\s+(TABLE|INDEX|TRIGGER|VIEW)\s|ALTER\s+TABLE\s|WITH\s+(RECURSIVE\s+)?\w+(\s*\([^)]*\))?\s+AS\s*\(|PRAGMA\s)",
    re.DOTALL,
)
"""The start of a statement as we write them (keywords in capitals)."""
OWNERS = ("store/", "sim/")
NOT_YET = {
    # read-side queries still in the views and pricing, on their way into the store
    "views/status.py", "views/detail.py", "views/exports.py",
    "pricing/budget.py", "pricing/inflight.py", "pricing/usage.py",
}


def _sql_sites(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    sites = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, a placeholder for the rest
            text = "".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)
        if text is not None and SQL.match(text):
            sites.append(f"{path.relative_to(SRC)}:{node.lineno}: {text[:60]!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("execute", "executemany", "executescript"):
                sites.append(f"{path.relative_to(SRC)}:{node.lineno}: .{node.func.attr}(...)")
    return sites


def test_no_sql_outside_the_store() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(OWNERS) or rel in NOT_YET:
            continue
        found += _sql_sites(path)
    assert found == []


def test_the_check_sees_sql() -> None:
    """The check itself: it finds the statements of a module that has them."""
    assert _sql_sites(SRC / "store" / "lifecycle.py")

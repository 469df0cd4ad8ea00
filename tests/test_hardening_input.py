"""Hardening: hostile input to the line parser, `batchtop enqueue`, the config loader
and the store's file.

Properties (hypothesis): any input either enqueues correctly or is rejected whole
with a message naming file, line and field (EnqueueError / ConfigError, through the
CLI a one-line `batchtop: ...` and exit 1), never another exception type, never a
partial enqueue. Inputs that are known to break this are left out of the generators
and pinned one by one below as strict xfails, each naming the bug.

Then the database file: one written by a newer batchtop, or not a batchtop database
at all, gives a clear error naming the file from every command, and the file is not
touched (same bytes, same mtime, no side files). tests/test_store.py covers the Store
class itself; here it is the commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from batchtop.config import Config, ConfigError, load_config, parse_config
from batchtop.errors import EnqueueError
from batchtop.intake.validation import ParsedRequest, parse_lines
from batchtop.store import Store
from batchtop.store.schema import SCHEMA_VERSION

from conftest import anthropic_line, openai_line

SOURCE = "in.jsonl"
# HARDENING_EXAMPLES=2000 for a deeper search than the default run's
PROPS = settings(
    max_examples=int(os.environ.get("HARDENING_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# -- generators ---------------------------------------------------------------------

# JSON values without the inputs pinned below: NaN/Infinity (not JSON), lone
# surrogates (cannot be UTF-8) and nesting deep enough to exhaust recursion.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
# keys neither empty nor holding control or line-separator characters: a key is
# echoed raw as the error's field (pinned below)
_keys = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=8)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)
_cids = st.one_of(  # an explicit null custom_id is pinned below
    st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=70),
    st.text(max_size=30),
    st.sampled_from(["dup-1", "dup_1", "", "a" * 512, "a" * 513]),
)
_models = st.one_of(st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-20250514", "x"]), st.text(max_size=12))


@st.composite
def valid_objects(draw: st.DrawFn) -> dict[str, Any]:
    cid = draw(st.one_of(st.none(), st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=64)))
    if draw(st.booleans()):
        obj = openai_line(cid, model=draw(_models.filter(bool)), content=draw(st.text(max_size=40)))
    else:
        obj = anthropic_line(cid, model=draw(_models.filter(bool)), max_tokens=draw(st.integers(1, 100_000)))
    return obj


@st.composite
def mutated_objects(draw: st.DrawFn) -> Any:
    """A valid line with one thing changed: a key dropped, added, or given any value."""
    obj = draw(valid_objects())
    where = obj
    path = draw(st.sampled_from([(), ("body",), ("params",), ("body", "messages"), ("params", "messages")]))
    for key in path:
        if not isinstance(where, dict) or key not in where:
            break
        where = where[key]
    if isinstance(where, dict):
        action = draw(st.sampled_from(["drop", "set", "add"]))
        keys = sorted(where)
        if action == "drop" and keys:
            where.pop(draw(st.sampled_from(keys)))
        elif action == "set" and keys:
            where[draw(st.sampled_from(keys))] = draw(json_values)
        else:
            where[draw(_keys)] = draw(json_values)
    if "custom_id" in obj or draw(st.booleans()):
        obj["custom_id"] = draw(_cids)
    if isinstance(obj, dict) and "custom_id" in obj and obj["custom_id"] is None:
        del obj["custom_id"]  # an explicit null custom_id is pinned below
    return obj


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_text_lines = st.text(max_size=60).map(lambda s: s.replace("\n", " ").encode())
lines_strategy = st.lists(
    st.one_of(
        valid_objects().map(_dumps).map(str.encode),
        mutated_objects().map(_dumps).map(str.encode),
        json_values.map(_dumps).map(str.encode),
        _text_lines,
        st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
        st.sampled_from([b"", b"   ", b"\t", b"{", b"null", b"[]", b'"x"', b"\xef\xbb\xbf{}", b"{}\r"]),
    ),
    max_size=8,
)


def _blank(raw: bytes) -> bool:
    """A line the parser skips: UTF-8 that is all (Unicode) whitespace."""
    try:
        return not raw.decode().strip()
    except UnicodeDecodeError:
        return False


_WHOLE_LINE = ("not valid JSON", "not UTF-8", "a line must be a JSON object", "cannot tell the provider", "line is ")


def _check_rejection(exc: EnqueueError, lines: list[bytes]) -> None:
    assert exc.errors, "rejected without naming any line"
    text = str(exc)
    for error in exc.errors:
        assert error.source == SOURCE
        assert 1 <= error.line <= len(lines), error
        assert not _blank(lines[error.line - 1]), f"blamed blank line {error.line}"
        assert isinstance(error.field, str) and error.message
        # a problem without a field is one with the line as a whole
        assert error.field or error.message.startswith(_WHOLE_LINE), error
        assert f"{SOURCE}:{error.line}:" in text
    assert text.endswith("nothing was enqueued")


def _check_accepted(parsed: list[ParsedRequest], lines: list[bytes]) -> None:
    nonblank = [(n, raw) for n, raw in enumerate(lines, 1) if not _blank(raw)]
    assert [p.lineno for p in parsed] == [n for n, _ in nonblank]
    keys = set()
    for p, (_, raw) in zip(parsed, nonblank):
        sent = json.loads(p.line)
        given_ = json.loads(raw)
        if given_.get("custom_id") is None:  # given an id of ours, the rest verbatim
            assert p.custom_id.startswith("bt_")
            given_ = {**given_, "custom_id": p.custom_id}
        assert sent == given_
        assert p.custom_id == sent["custom_id"]
        assert p.bytes == len(p.line.encode()) + 1
        assert p.provider in ("openai", "anthropic") and p.model
        keys.add((p.provider, p.custom_id))
    assert len(keys) == len(parsed)


# -- the line parser --------------------------------------------------------------------


@PROPS
@given(lines_strategy)
@example([b'{"custom_id": "x", "params": {"model": "m", "max_tokens": true, "messages": [1]}}'])
@example([b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": []}'])
@example([json.dumps(openai_line("dup-1")).encode(), json.dumps(openai_line("dup-1")).encode()])
def test_parse_lines_accepts_exactly_or_rejects_naming_line_and_field(lines: list[bytes]) -> None:
    numbered = [(SOURCE, n, raw) for n, raw in enumerate(lines, 1)]
    try:
        parsed = parse_lines(numbered)
    except EnqueueError as exc:
        _check_rejection(exc, lines)
    else:
        _check_accepted(parsed, lines)


# -- the CLI: all or nothing on a store that already has rows -----------------------------


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding a few live requests, among them the ids the generators reuse."""
    d = tmp_path_factory.mktemp("seeded") / "data"
    with Store(d) as store:
        rows = [openai_line("dup-1"), anthropic_line("dup_1"), openai_line("r1"), anthropic_line("c1")]
        store.enqueue(parse_lines([(SOURCE, n, json.dumps(r)) for n, r in enumerate(rows, 1)]))
    return d


def _table_digest(db_path: Path) -> tuple[int, str]:
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id, provider, custom_id, line, state FROM requests ORDER BY id").fetchall()
        buffers = db.execute("SELECT * FROM buffers ORDER BY id").fetchall()
    return len(rows), hashlib.sha256(repr((rows, buffers)).encode()).hexdigest()


@PROPS
@given(lines=lines_strategy)
@example(lines=[json.dumps(openai_line("fresh-1")).encode(), json.dumps(openai_line("dup-1")).encode()])
@example(lines=[json.dumps(anthropic_line("fresh_2")).encode(), b"{"])
def test_cli_enqueue_is_all_or_nothing_with_a_clear_message(
    cli, tmp_path_factory: pytest.TempPathFactory, seeded_store: Path, lines: list[bytes]
) -> None:
    import shutil

    work = tmp_path_factory.mktemp("ex")
    data = work / "data"
    shutil.copytree(seeded_store, data)
    path = work / SOURCE
    path.write_bytes(b"\n".join(lines) + (b"\n" if lines else b""))
    before = _table_digest(data / "batchtop.sqlite3")
    # global options go before or after the command (cli.md): this example's own data dir
    result = cli("enqueue", "--data-dir", str(data), str(path))
    after = _table_digest(data / "batchtop.sqlite3")
    assert "Traceback" not in result.err
    nonblank = sum(1 for raw in lines if not _blank(raw))
    if result.code == 0:
        added = after[0] - before[0]
        assert added == nonblank
        assert (f"enqueued {nonblank} request" in result.out) if nonblank else ("nothing to enqueue" in result.err)
        with sqlite3.connect(data / "batchtop.sqlite3") as db:
            rows = db.execute("SELECT custom_id, line, state FROM requests ORDER BY id").fetchall()[before[0]:]
        given_ = [json.loads(raw) for raw in lines if not _blank(raw)]
        for (cid, line, state), obj in zip(rows, given_, strict=True):
            assert state == "queued" and json.loads(line) == {**obj, "custom_id": cid}
    else:
        assert result.code == 1
        assert after == before, "a rejected input changed the store"
        assert result.err.startswith(f"batchtop: {path}:"), result.err
        assert result.err.rstrip().endswith("nothing was enqueued")
        for message in result.err.rstrip("\n").split("\n")[:-1]:
            where = message.removeprefix("batchtop: ")
            if where.startswith("..."):
                continue
            assert where.startswith(f"{path}:")
            lineno = int(where[len(str(path)) + 1 :].split(":", 1)[0])
            assert 1 <= lineno <= len(lines) and not _blank(lines[lineno - 1])


# -- the config loader -------------------------------------------------------------------

_toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),  # nan and inf are valid TOML
    st.text(max_size=16),
    st.sampled_from(["36h", "1h30m", "0", "-1", "90s", "2d", "nan", "1e400", "", "0.5"]),
)
toml_values = st.recursive(
    _toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)
_SECTION_KEYS = {
    "engine": ["poll_interval", "max_attempts", "auto_resubmit", "lease_ttl"],
    "flush": ["max_requests", "max_bytes", "max_age", "deadline_margin", "min_requests"],
    "alerts": ["failure_rate", "window"],
    "budget": ["daily_usd", "monthly_usd", "openai", "anthropic"],
    "accounts": ["openai", "anthropic", "google"],
    "prices": ["openai", "anthropic", "google", "x"],
}
_BUFFER_KEYS = ["provider", "endpoint", "model", "max_requests", "max_age", "output", "min_requests"]
# durations get scalars only: an array, table or date there is pinned below
_DURATIONS = {"poll_interval", "lease_ttl", "max_age", "deadline_margin", "window"}


def _value_for(draw: st.DrawFn, key: str) -> Any:
    return draw(_toml_scalars if key in _DURATIONS else toml_values)


@st.composite
def config_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the real sections and keys with arbitrary values, sometimes junk keys."""
    doc: dict[str, Any] = {}
    for section, keys in _SECTION_KEYS.items():
        if draw(st.booleans()):
            table = {k: _value_for(draw, k) for k in keys if draw(st.booleans())}
            if draw(st.integers(0, 9)) == 0:
                table[draw(st.text(max_size=6))] = draw(toml_values)
            doc[section] = table if draw(st.integers(0, 9)) else draw(toml_values)
    if draw(st.booleans()):
        doc["buffers"] = [
            {k: _value_for(draw, k) for k in _BUFFER_KEYS if draw(st.booleans())} for _ in range(draw(st.integers(0, 2)))
        ]
    if draw(st.integers(0, 9)) == 0:
        doc[draw(st.text(max_size=6))] = draw(toml_values)
    return doc


def _pinned_config(raw: bytes) -> bool:
    """Whether this TOML holds an input pinned below (a duration of another TOML type)."""
    try:
        doc = tomllib.loads(raw.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return False
    tables = [doc.get(s) for s in ("engine", "flush", "alerts")]
    buffers = doc.get("buffers")
    tables += buffers if isinstance(buffers, list) else []
    return any(
        isinstance(t, dict) and k in t and not isinstance(t[k], (str, int, float))
        for t in tables
        for k in _DURATIONS
    )


def _check_config_error(exc: ConfigError, path: Path) -> None:
    assert str(exc).startswith(f"{path}: "), str(exc)


@PROPS
@given(config_docs())
@example({"engine": {"poll_interval": "1h30x"}})
@example({"prices": {"openai": {"gpt-4o": {"input": -1}}}})
@example({"buffers": [{"output_schema": ""}]})
def test_parse_config_loads_or_names_the_key(doc: dict[str, Any]) -> None:
    path = Path("/etc/batchtop/config.toml")
    try:
        config = parse_config(doc, path)
    except ConfigError as exc:
        _check_config_error(exc, path)
        assert "key '" in str(exc)
    else:
        assert isinstance(config, Config)
        assert config.engine.max_attempts >= 1 and config.flush.max_requests >= 1


@PROPS
@given(st.one_of(st.binary(max_size=200), config_docs().map(lambda d: tomli_w.dumps(d).encode())))
@example(b"[engine]\npoll_interval = 1\n[engine]\n")
@example(b"a = 1\na = 2\n")
@example(b'[flush]\nmax_requests = "10"\n')
def test_load_config_of_any_bytes_loads_or_names_the_file(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    assume(not _pinned_config(raw))
    path = tmp_path_factory.mktemp("cfg") / "config.toml"
    path.write_bytes(raw)
    try:
        config = load_config(path, required=True)
    except ConfigError as exc:
        _check_config_error(exc, path)
    else:
        assert isinstance(config, Config)


# -- pinned: inputs that break the properties today ------------------------------------------

_OPENAI_LINE = (
    '{{"custom_id":{cid},"method":"POST","url":"/v1/chat/completions",'
    '"body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":{content}}}]}}}}'
)


def _enqueue_file(cli, tmp_path: Path, data_dir: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / SOURCE
    path.write_text(text + "\n")
    result = cli("enqueue", str(path))
    rows = 0
    if (data_dir / "batchtop.sqlite3").exists():
        with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
            rows = db.execute("SELECT count(*) FROM requests").fetchone()[0]
    return result, rows


def test_lone_surrogate_in_a_line_without_custom_id_is_rejected_naming_the_line(cli, tmp_path: Path, data_dir: Path) -> None:
    line = _OPENAI_LINE.format(cid="null", content='"\\ud800"')
    with pytest.raises(EnqueueError, match=rf"{SOURCE}:1:"):
        parse_lines([(SOURCE, 1, line)])


def test_lone_surrogate_custom_id_is_rejected_by_the_cli_naming_the_field(cli, tmp_path: Path, data_dir: Path) -> None:
    result, rows = _enqueue_file(cli, tmp_path, data_dir, _OPENAI_LINE.format(cid='"\\udc80"', content='"hi"'))
    assert result.code == 1 and f"{SOURCE}:1: custom_id:" in result.err
    assert rows == 0


def test_deeply_nested_line_is_rejected_naming_the_line(cli, tmp_path: Path, data_dir: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    result, rows = _enqueue_file(cli, tmp_path, data_dir, _OPENAI_LINE.format(cid='"d1"', content=deep))
    assert result.code == 1 and f"{SOURCE}:1:" in result.err and rows == 0


@pytest.mark.parametrize("make", [openai_line, anthropic_line], ids=["openai", "anthropic"])
def test_explicit_null_custom_id_sends_the_generated_one(make) -> None:  # type: ignore[no-untyped-def]
    line = json.dumps({**make(None), "custom_id": None})
    (parsed,) = parse_lines([(SOURCE, 1, line)])
    assert json.loads(parsed.line)["custom_id"] == parsed.custom_id


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_literals_are_rejected(literal: str) -> None:
    line = _OPENAI_LINE.format(cid='"n1"', content='"hi"').replace('"model":', f'"temperature":{literal},"model":')
    with pytest.raises(EnqueueError, match=rf"{SOURCE}:1:"):
        parse_lines([(SOURCE, 1, line)])


def test_line_with_a_repeated_key_is_rejected() -> None:
    line = _OPENAI_LINE.format(cid='"a","custom_id":"b"', content='"hi"')
    with pytest.raises(EnqueueError, match=rf"{SOURCE}:1: custom_id"):
        parse_lines([(SOURCE, 1, line)])


@pytest.mark.parametrize("key", ["\nbatchtop: in.jsonl:9: forged", "\x1b]0;owned\x07", "\x1b[2J"], ids=["newline", "osc", "csi"])
def test_error_messages_do_not_echo_control_characters(cli, tmp_path: Path, data_dir: Path, key: str) -> None:
    line = json.dumps({**anthropic_line("k1"), key: 1})
    result, rows = _enqueue_file(cli, tmp_path, data_dir, line)
    assert result.code == 1 and rows == 0
    lines = result.err.rstrip("\n").split("\n")
    assert len(lines) == 2 and lines[0].startswith(f"batchtop: {tmp_path / SOURCE}:1:"), lines
    assert not any(ch in result.err for ch in "\x1b\x07"), result.err


def test_an_empty_unknown_key_is_named() -> None:
    line = json.dumps({**anthropic_line("k1"), "": 1})
    with pytest.raises(EnqueueError) as caught:
        parse_lines([(SOURCE, 1, line)])
    assert caught.value.errors[0].field, caught.value


def test_deeply_nested_toml_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, required=True)


@pytest.mark.parametrize("value", ["[]", "{}", "1979-05-27", "07:32:00", "1979-05-27T07:32:00Z"])
def test_duration_of_another_toml_type_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[engine]\npoll_interval = {value}\n")
    with pytest.raises(ConfigError, match="engine.poll_interval"):
        load_config(path, required=True)


@pytest.mark.parametrize("value", ["nan", "inf", '"nan"', '"inf"', '"1e400"'])
def test_non_finite_duration_is_a_config_error(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[engine]\npoll_interval = {value}\n")
    with pytest.raises(ConfigError, match="engine.poll_interval"):
        load_config(path, required=True)


# -- the database file: newer, or not a batchtop database ----------------------------------


def _snapshot(data_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    """Bytes, mtime and mode of every file; of the -shm only its mode: it is SQLite's
    shared-memory WAL index, which any reader rewrites, not data."""
    return {
        p.name: (b"", 0, p.stat().st_mode) if p.name.endswith("-shm") else (p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_mode)
        for p in sorted(data_dir.iterdir())
    }


def _real_db(data_dir: Path) -> None:
    with Store(data_dir) as store:
        store.enqueue(parse_lines([(SOURCE, i, json.dumps(openai_line(f"r{i}", content="x" * 300))) for i in range(1, 301)]))


def _newer_wal(data_dir: Path) -> None:
    """As a newer batchtop leaves it: WAL mode, a higher user_version, checkpointed."""
    _real_db(data_dir)
    with sqlite3.connect(data_dir / "batchtop.sqlite3") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()


def _newer_rollback(data_dir: Path) -> None:
    _real_db(data_dir)
    db = sqlite3.connect(data_dir / "batchtop.sqlite3")
    db.execute("PRAGMA journal_mode = DELETE")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 40}")
    db.commit()
    db.close()


def _random_bytes(seed: int, size: int):  # type: ignore[no-untyped-def]
    def make(data_dir: Path) -> None:
        data_dir.mkdir(mode=0o700)
        (data_dir / "batchtop.sqlite3").write_bytes(random.Random(seed).randbytes(size))

    return make


def _truncated(data_dir: Path) -> None:
    _real_db(data_dir)
    path = data_dir / "batchtop.sqlite3"
    path.write_bytes(path.read_bytes()[:20_000])


def _header_then_garbage(data_dir: Path) -> None:
    _real_db(data_dir)
    path = data_dir / "batchtop.sqlite3"
    path.write_bytes(path.read_bytes()[:100] + random.Random(7).randbytes(60_000))


KINDS = {
    "newer-wal": (_newer_wal, "newer batchtop"),
    "newer-rollback": (_newer_rollback, "newer batchtop"),
    "random-small": (_random_bytes(1, 50), "not a usable batchtop database"),
    "random-large": (_random_bytes(2, 70_000), "not a usable batchtop database"),
    "truncated": (_truncated, "not a usable batchtop database"),
    "header-then-garbage": (_header_then_garbage, "not a usable batchtop database"),
}
COMMANDS = [
    ["enqueue", "FILE"],
    ["tick"],
    ["run"],
    ["flush", "--all"],
    ["results"],
    ["dead-letters", "--json"],
    ["--once", "--no-refresh"],
    ["--once", "--json", "--no-refresh"],
    ["--once", "--json"],
]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_command_refuses_an_unusable_database_and_leaves_it_alone(cli, data_dir: Path, tmp_path: Path, kind: str) -> None:
    make, expected = KINDS[kind]
    make(data_dir)
    lines = tmp_path / "more.jsonl"
    lines.write_text(json.dumps(openai_line("new-1")) + "\n")
    before = _snapshot(data_dir)
    db_file = str(data_dir / "batchtop.sqlite3")
    for command in COMMANDS:
        args = [str(lines) if a == "FILE" else a for a in command]
        result = cli(*args)
        assert result.code == 1, (command, result)
        assert result.err.startswith(f"batchtop: {db_file}: ") and expected in result.err, (command, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, (command, result.err)
        assert _snapshot(data_dir) == before, f"{command} touched the data dir"


@pytest.mark.parametrize("kind", ["newer-wal", "random-large"])
def test_the_real_entry_point_exits_1_naming_the_file(data_dir: Path, tmp_path: Path, kind: str) -> None:
    make, expected = KINDS[kind]
    make(data_dir)
    before = _snapshot(data_dir)
    for args in (["run"], ["--once", "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), *args],
            capture_output=True, text=True, timeout=60, env={**os.environ, "OPENAI_API_KEY": "sk-x"},
        )
        assert proc.returncode == 1, proc
        assert proc.stderr.startswith(f"batchtop: {data_dir / 'batchtop.sqlite3'}: ") and expected in proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert _snapshot(data_dir) == before



_KILLED_NEWER = """
import os, sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA wal_autocheckpoint = 0")
db.execute("PRAGMA user_version = %d")
db.execute("INSERT INTO engine_state (key, value) VALUES ('written-by', 'a newer batchtop')")
os._exit(0)  # killed: the commits are in the WAL, not yet in the main file
"""


def test_newer_database_with_a_pending_wal_is_left_as_it_was(cli, data_dir: Path) -> None:
    _real_db(data_dir)
    subprocess.run([sys.executable, "-c", _KILLED_NEWER % (SCHEMA_VERSION + 1), str(data_dir / "batchtop.sqlite3")], check=True)
    before = _snapshot(data_dir)
    assert "batchtop.sqlite3-wal" in before
    result = cli("--once", "--no-refresh")
    assert result.code == 1 and "newer batchtop" in result.err
    assert _snapshot(data_dir) == before

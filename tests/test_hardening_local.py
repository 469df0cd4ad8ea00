"""Hardening against the local machine: huge values, other users' files, secrets in output.

Each test pins one finding of the security review (issue 19, items 4-9) and failed
on the code before its fix. The machine-sharing tests run as two Unix users: as
root they create a second user (`useradd`) and act as it through `runuser`; they are
skipped only where that is impossible (not root, or no `useradd`/`runuser`).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batchtop.config import ConfigError, load_config
from batchtop.intake.client import Client
from test_once import mixed_work, settle, sim  # noqa: F401 (sim is a fixture)

from conftest import openai_line, run_batchtop

# -- 19.8: durations and deadlines finite and bounded; a schema file regular and capped


def _write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("flush", "max_age", "1e300"),
        ("flush", "max_age", '"999999999999d"'),
        ("flush", "deadline_margin", '"100000d"'),
        ("alerts", "window", "1e300"),
        ("engine", "poll_interval", "1e300"),
        ("engine", "lease_ttl", '"99999999999h"'),
    ],
)
def test_a_huge_config_duration_is_refused_naming_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    path = _write_config(tmp_path / "config.toml", f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError, match=rf"{path}: key '{section}\.{key}': .*at most"):
        load_config(path, required=True)


def test_a_huge_buffer_max_age_is_refused_naming_the_entry(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "config.toml", '[[buffers]]\nmodel = "m"\nmax_age = "999999999999d"\n')
    with pytest.raises(ConfigError, match=r"key 'buffers\[0\]\.max_age': .*at most"):
        load_config(path, required=True)


def test_durations_up_to_a_few_years_still_load(tmp_path: Path) -> None:
    path = _write_config(tmp_path / "config.toml", '[flush]\nmax_age = "365d"\n[alerts]\nwindow = "30d"\n')
    config = load_config(path, required=True)
    assert config.flush.max_age == 365 * 86400 and config.alerts.window == 30 * 86400


@pytest.mark.parametrize("sla", ["1e300", "999999999999d", "inf", "nan", "1e20"])
def test_enqueue_refuses_a_huge_sla_and_the_status_still_prints(cli, tmp_path: Path, data_dir: Path, sla: str) -> None:
    work = tmp_path / "work.jsonl"
    work.write_text(json.dumps(openai_line("r1")) + "\n")
    got = cli("enqueue", "--sla", sla, str(work))
    assert got.code == 1, got
    assert got.err.startswith("batchtop: --sla: ") and "Traceback" not in got.err, got.err
    assert not (data_dir / "batchtop.sqlite3").exists() or cli("--once", "--json", "--no-refresh").code == 0
    assert cli("enqueue", "--sla", "36h", str(work)).code == 0
    once = cli("--once", "--json", "--no-refresh")
    assert once.code == 0, once.err


@pytest.mark.parametrize("deadline", ["99999-01-01T00:00:00Z", "+999999-01-01T00:00:00Z", "0001-01-01T00:00:00Z"])
def test_enqueue_refuses_a_deadline_years_away(cli, tmp_path: Path, deadline: str) -> None:
    work = tmp_path / "work.jsonl"
    work.write_text(json.dumps(openai_line("r1")) + "\n")
    got = cli("enqueue", "--deadline", deadline, str(work))
    assert got.code == 1 and got.err.startswith("batchtop: --deadline: "), got


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0, "nan"])
def test_python_api_refuses_a_non_finite_or_far_deadline(data_dir: Path, deadline: object) -> None:
    with Client(data_dir) as bt:
        with pytest.raises(ValueError, match="deadline"):
            bt.enqueue(openai_line("r1"), deadline=deadline)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="deadline"):
            bt.enqueue_many([openai_line("r2")], deadline=deadline)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sla"):
            bt.enqueue(openai_line("r3"), sla=1e300)
    got = run_batchtop("--data-dir", str(data_dir), "--once", "--json", "--no-refresh")
    assert got.returncode == 0, got.stderr


def test_python_api_still_takes_a_near_deadline(data_dir: Path) -> None:
    import time

    with Client(data_dir) as bt:
        assert bt.enqueue(openai_line("r1"), deadline=time.time() + 86400) == "r1"
        assert bt.enqueue(openai_line("r2"), deadline="2027-06-01T00:00:00Z") == "r2"


_LOAD = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a runaway read fails here, not the machine
from batchtop.config import ConfigError, load_config
try:
    load_config(__import__("pathlib").Path(sys.argv[1]), required=True)
except ConfigError as exc:
    print(exc)
    sys.exit(1)
"""


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir", "huge"])
def test_output_schema_must_be_a_small_regular_file(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        schema = tmp_path / "schema.fifo"
        os.mkfifo(schema)
    elif target == "dir":
        schema = tmp_path / "schemas"
        schema.mkdir()
    elif target == "huge":
        schema = tmp_path / "huge.json"
        schema.write_text('{"description": "' + "x" * (2 << 20) + '"}')
    else:
        schema = Path(target)
    path = _write_config(tmp_path / "config.toml", f'[[buffers]]\noutput_schema = "{schema}"\n')
    # a subprocess with a time and memory limit: the old code blocked on a FIFO and read /dev/zero forever
    got = subprocess.run([sys.executable, "-c", _LOAD, str(path)], capture_output=True, text=True, timeout=30)
    assert got.returncode == 1, (got.stdout, got.stderr[-2000:])
    assert re.match(rf"{re.escape(str(path))}: key 'buffers\[0\]\.output_schema': .*(regular file|larger than)", got.stdout), got.stdout


# -- 19.4 / 19.5: secrets in base URLs, and keys in a custom api_key_env ----------------


class _QuotingProvider:
    """A provider that answers every call 401 and quotes back the credentials it got
    (the Authorization header, x-api-key), as a careless proxy or a hostile one does."""

    def __init__(self) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                quoted = f"Authorization: {self.headers.get('Authorization')}; x-api-key: {self.headers.get('x-api-key')}"
                if self.path.startswith("/v1/messages"):
                    body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid key ({quoted})"}}
                else:
                    body = {"error": {"message": f"Incorrect API key provided ({quoted})", "type": "invalid_request_error",
                                      "param": None, "code": "invalid_api_key"}}
                raw = json.dumps(body).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _QuotingProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _secret_hits(secret: str, blobs: dict[str, bytes]) -> list[str]:
    """Where the secret, or a distinctive 10-character piece of it, shows up."""
    pieces = {secret} | {secret[i : i + 10] for i in range(0, len(secret) - 9)}
    return [f"{name}: {piece!r}" for name, blob in blobs.items() for piece in sorted(pieces) if piece.encode() in blob]


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_keys_in_a_custom_api_key_env_are_redacted_from_stored_and_printed_errors(tmp_path: Path, data_dir: Path) -> None:
    openai_key = "tok_Zq81xLmN0pQr55vWyy3"  # no sk- prefix, not in a *_API_KEY variable
    anthropic_key = "ak.77HJkk2Lq0oPPzv19"
    with _QuotingProvider() as provider:
        config = _write_config(tmp_path / "config.toml", (
            "[flush]\nmax_age = 0\n"
            f'[accounts.openai]\napi_key_env = "MY_OPENAI_TOKEN"\nbase_url = "{provider.url}/v1"\n'
            f'[accounts.anthropic]\napi_key_env = "MY_CLAUDE_TOKEN"\nbase_url = "{provider.url}"\n'
        ))
        env = {"MY_OPENAI_TOKEN": openai_key, "MY_CLAUDE_TOKEN": anthropic_key}
        work = tmp_path / "work.jsonl"
        from conftest import anthropic_line

        work.write_text(json.dumps(openai_line("o1")) + "\n" + json.dumps(anthropic_line("a1")) + "\n")
        base = ("--data-dir", str(data_dir), "--config", str(config))
        printed: dict[str, bytes] = {}
        for args in [("enqueue", str(work)), ("tick",), ("tick",), ("--once", "--json"), ("--once",),
                     ("--once", "--json", "--no-refresh"), ("dead-letters", "--json")]:
            got = run_batchtop(*base, *args, env=env, timeout=120)
            printed[f"{args} stdout"] = got.stdout.encode()
            printed[f"{args} stderr"] = got.stderr.encode()
            assert "Traceback" not in got.stderr, got.stderr
    stored = {p.name: p.read_bytes() for p in data_dir.iterdir()}
    everything = {**printed, **stored}
    # the 401s were recorded and printed: there was something to redact
    assert b"401" in b"".join(stored.values()) or b"Incorrect API key" in b"".join(stored.values()), stored.keys()
    hits = _secret_hits(openai_key, everything) + _secret_hits(anthropic_key, everything)
    assert not hits, hits
    assert b"[redacted]" in b"".join(everything.values())


def test_redact_knows_the_keys_in_use_whatever_their_shape() -> None:
    from batchtop.config import Account, Config
    from batchtop.providers.clients import build_adapter, redact

    env_before = dict(os.environ)
    os.environ["BT_TEST_ODD_TOKEN"] = "x9-plain-Q7"
    try:
        config = Config(accounts={"openai": Account("openai", api_key_env="BT_TEST_ODD_TOKEN", base_url="http://127.0.0.1:9/v1")})
        build_adapter(config, "openai")
        assert redact("401: key x9-plain-Q7 is wrong") == "401: key [redacted] is wrong"
        assert "hunter2" not in redact("POST http://bob:hunter2@proxy.example/v1/files failed")
        assert "Bearer [redacted]" in redact("header was Authorization: Bearer whatever-shape-9")
    finally:
        os.environ.clear()
        os.environ.update(env_before)


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_run_does_not_log_credentials_of_a_base_url_nor_http_requests_unless_asked(tmp_path: Path, data_dir: Path) -> None:
    import signal
    import time

    from batchtop.sim import SimConfig, Simulator

    simulator = Simulator(SimConfig(per_request_s=0.0)).start()
    try:
        base_url = simulator.openai_base_url.replace("http://", "http://opsuser:PROXYPASS-77aa@")
        config = _write_config(tmp_path / "config.toml", f'[engine]\npoll_interval = 0.2\n[flush]\nmax_age = 0\n'
                               f'[accounts.openai]\nbase_url = "{base_url}"\n')
        env = {**os.environ, "OPENAI_API_KEY": "sk-test-run-key-000111"}
        work = tmp_path / "work.jsonl"
        work.write_text(json.dumps(openai_line("o1")) + "\n")
        base = [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config)]
        logs = {}
        for name, extra in (("quiet", []), ("verbose", ["--verbose"])):
            subprocess.run([*base, "enqueue", str(work)], env=env, check=True, capture_output=True, timeout=60)
            engine = subprocess.Popen([*base, "run", *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                end = time.monotonic() + 60
                while True:
                    import sqlite3

                    with sqlite3.connect(data_dir / "batchtop.sqlite3", timeout=30) as db:
                        (left,) = db.execute("SELECT count(*) FROM requests WHERE state != 'succeeded'").fetchone()
                    if not left:
                        break
                    assert time.monotonic() < end and engine.poll() is None, (
                        engine.stderr.read() if engine.poll() is not None else "timeout"
                    )
                    time.sleep(0.2)
            finally:
                engine.send_signal(signal.SIGTERM)
                out, err = engine.communicate(timeout=60)
            logs[name] = out + err
            work.write_text(json.dumps(openai_line(f"o-{name}")) + "\n")
    finally:
        simulator.stop()
    assert b"HTTP Request" not in logs["quiet"], logs["quiet"].decode(errors="replace")[-2000:]
    assert b"HTTP Request" in logs["verbose"], "--verbose logs the HTTP requests"
    for name, blob in logs.items():
        assert b"PROXYPASS" not in blob and b"opsuser:" not in blob, (name, blob.decode(errors="replace")[-2000:])
    stored = b"".join(p.read_bytes() for p in data_dir.iterdir())
    assert b"PROXYPASS" not in stored


# -- the second Unix user for the machine-sharing tests ----------------------------------

PEER = "btlocal-peer"


@pytest.fixture(scope="session")
def peer() -> tuple[str, int]:
    """(name, uid) of a second local user, created when the tests run as root."""
    import pwd
    import shutil

    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root with useradd and runuser to act as a second user")
    try:
        pwd.getpwnam(PEER)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PEER],
                              capture_output=True, text=True, check=False)
        if made.returncode not in (0, 9):  # 9: it exists (a parallel run made it)
            pytest.skip(f"cannot create a second user: {made.stderr.strip()}")
    # The second user runs this checkout's interpreter and sources: a checkout under a
    # directory other users cannot enter (a 0700 mktemp dir) leaves it nothing to run.
    src = str(Path(__file__).resolve().parents[1] / "src")
    probe = subprocess.run(["runuser", "-u", PEER, "--", sys.executable, "-c", "import batchtop"],
                           capture_output=True, text=True,
                           env={"PYTHONPATH": src, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin")},
                           timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"a second user cannot run this checkout ({probe.stderr.strip()[:200]}): "
                    "a directory above it is closed to other users")
    return PEER, pwd.getpwnam(PEER).pw_uid


@pytest.fixture
def shared_tmp() -> Path:
    """A sticky, world-writable dir like /tmp (pytest's own tmp_path is root's, 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bt-shared-"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as(user: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """`batchtop ARGS` run as `user`, with this checkout's interpreter and sources."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": src, "HOME": "/nonexistent",
           "BATCHTOP_CONFIG": "/nonexistent/config.toml", "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(["runuser", "-u", user, "--", sys.executable, "-m", "batchtop", *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False, **kw)  # type: ignore[call-overload]


# -- 19.6: results -o never replaces what is not a regular file of ours ------------------


@pytest.fixture
def stored_results(sim, cli, tmp_path: Path, data_dir: Path) -> bytes:  # type: ignore[no-untyped-def]  # noqa: F811
    """A data dir holding real results (through the simulator); what `results` prints."""
    assert cli("enqueue", mixed_work(tmp_path, 3)).code == 0
    settle(cli, data_dir)
    got = cli("results")
    assert got.code == 0 and got.out.count("\n") == 6, got
    return got.out.encode()


def _device(path: Path, minor: int) -> Path:
    """A character device node like /dev/null (minor 3) or /dev/full (minor 7), of our own:
    the real ones are shared with everything else on the machine."""
    import stat as st

    if os.geteuid() != 0:
        pytest.skip("creating a device node needs root")
    os.mknod(path, st.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def test_results_to_a_device_writes_to_it_and_leaves_the_node(cli, tmp_path: Path, stored_results: bytes) -> None:
    import stat as st

    null = _device(tmp_path / "null", 3)
    got = cli("results", "-o", str(null))
    assert got.code == 0, got.err
    assert st.S_ISCHR(null.lstat().st_mode), "the device node was replaced by a file"
    assert "wrote 6 results" in got.err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".null")], "a temp file was left behind"


def test_results_to_a_full_device_is_a_clear_error(tmp_path: Path, data_dir: Path, stored_results: bytes) -> None:
    import stat as st

    full = _device(tmp_path / "full", 7)
    got = run_batchtop("--data-dir", str(data_dir), "results", "-o", str(full), timeout=60)
    assert st.S_ISCHR(full.lstat().st_mode), "the device node was replaced by a file"
    assert got.returncode == 1, got
    assert got.stderr.startswith(f"batchtop: {full}: ") and "No space left" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr


def test_results_to_a_full_stdout_is_a_clear_error(tmp_path: Path, data_dir: Path, stored_results: bytes) -> None:
    full = _device(tmp_path / "full", 7)
    with full.open("wb") as out:
        got = subprocess.run([sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "results"],
                             stdout=out, stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert got.returncode == 1 and "No space left" in got.stderr and "Traceback" not in got.stderr, got.stderr


def test_results_to_a_fifo_writes_into_it(tmp_path: Path, data_dir: Path, stored_results: bytes) -> None:
    import stat as st

    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there, so the export's open does not wait
    try:
        got = run_batchtop("--data-dir", str(data_dir), "results", "-o", str(fifo), timeout=60)
        assert got.returncode == 0, got.stderr
        assert st.S_ISFIFO(fifo.lstat().st_mode), "the FIFO was replaced by a file"
        assert os.read(reader, 1 << 20) == stored_results
    finally:
        os.close(reader)


@pytest.mark.parametrize("alias", ["/dev/fd/1", "/proc/self/fd/1", "link-to-proc-self-fd-1"])
def test_results_to_an_alias_of_stdout_writes_to_stdout(tmp_path: Path, data_dir: Path, stored_results: bytes, alias: str) -> None:
    """`-o /dev/stdout` works too; it is not tested by that name here, because code that
    replaced the target would replace the machine's own /dev/stdout. A link of ours to
    /proc/self/fd/1 is what /dev/stdout is."""
    if alias.startswith("link"):
        link = tmp_path / alias
        link.symlink_to("/proc/self/fd/1")
        alias = str(link)
    got = run_batchtop("--data-dir", str(data_dir), "results", "-o", alias, timeout=60)
    assert got.returncode == 0, got.stderr
    assert got.stdout.encode() == stored_results
    if alias.startswith(str(tmp_path)):
        assert Path(alias).is_symlink(), "the link was replaced by a file"


def test_results_to_a_directory_is_a_clear_error(tmp_path: Path, data_dir: Path) -> None:
    target = tmp_path / "exports"
    target.mkdir()
    got = run_batchtop("--data-dir", str(data_dir), "results", "-o", str(target), timeout=60)
    assert got.returncode == 1, got
    assert got.stderr.startswith(f"batchtop: {target}: ") and "directory" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert target.is_dir() and not list(target.iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exports")], "a temp file was left behind"


def test_results_over_another_users_file_in_a_sticky_dir_is_a_clear_error(peer: tuple[str, int], shared_tmp: Path) -> None:
    victim = shared_tmp / "results.jsonl"
    victim.write_text("root's own file\n")  # owned by root; the peer may not replace it in a sticky dir
    got = _as(peer[0], "--data-dir", str(shared_tmp / "peer-data"), "results", "-o", str(victim))
    assert got.returncode == 1, got
    assert got.stderr.startswith(f"batchtop: {victim}: ") and "Traceback" not in got.stderr, got.stderr
    assert victim.read_text() == "root's own file\n"
    assert [p.name for p in shared_tmp.iterdir()] == ["results.jsonl"], "a temp file was left behind"


def test_results_does_not_replace_a_file_of_another_user(peer: tuple[str, int], tmp_path: Path, data_dir: Path) -> None:
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text("keep me\n")
    os.chown(theirs, peer[1], -1)
    got = run_batchtop("--data-dir", str(data_dir), "results", "-o", str(theirs), timeout=60)
    assert got.returncode == 1 and "another user" in got.stderr, got
    assert theirs.read_text() == "keep me\n" and theirs.stat().st_uid == peer[1]


# -- 19.7: the data dir and the database are checked on every open ------------------------

_READERS_AND_WRITERS = [("--once", "--no-refresh"), ("--once", "--json", "--no-refresh"), ("tick",), ("results",),
                        ("dead-letters",), ("flush", "--all")]


def _mode(path: Path) -> int:
    import stat as st

    return st.S_IMODE(path.lstat().st_mode)


def _seed(data_dir: Path) -> None:
    """A real database with one request in it."""
    with Client(data_dir) as bt:
        bt.enqueue(openai_line("seed"))


def _files(data_dir: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.name: (p.read_bytes() if p.is_file() else b"", p.lstat().st_uid, _mode(p)) for p in sorted(data_dir.iterdir())}


def test_our_own_loose_data_dir_and_database_are_tightened_on_open(tmp_path: Path, data_dir: Path) -> None:
    _seed(data_dir)
    os.chmod(data_dir, 0o777)
    for name in ("batchtop.sqlite3", "batchtop.sqlite3-wal", "batchtop.sqlite3-shm"):
        if (data_dir / name).exists():
            os.chmod(data_dir / name, 0o666 if name != "batchtop.sqlite3" else 0o644)
    got = run_batchtop("--data-dir", str(data_dir), "--once", "--no-refresh", timeout=60)
    assert got.returncode == 0, got.stderr
    assert _mode(data_dir) == 0o700
    assert {p.name: _mode(p) for p in data_dir.iterdir()} == {p.name: 0o600 for p in data_dir.iterdir()}


def test_python_api_tightens_a_loose_database_too(data_dir: Path) -> None:
    _seed(data_dir)
    os.chmod(data_dir / "batchtop.sqlite3", 0o644)
    with Client(data_dir):
        pass
    assert _mode(data_dir / "batchtop.sqlite3") == 0o600


@pytest.mark.parametrize("args", _READERS_AND_WRITERS + [("enqueue", "-")])
def test_a_data_dir_pre_created_by_another_user_is_refused(peer: tuple[str, int], shared_tmp: Path, args: tuple[str, ...]) -> None:
    """The other user makes the dir 0777 and a database 0666 in it, as themselves; we
    (root here) must not use it: they could read every prompt."""
    data_dir = shared_tmp / "data"
    made = subprocess.run(
        ["runuser", "-u", peer[0], "--", sys.executable, "-c",
         "import os, sqlite3, sys; d = sys.argv[1]; os.mkdir(d); os.chmod(d, 0o777);"
         " db = sqlite3.connect(d + '/batchtop.sqlite3'); db.execute('CREATE TABLE t (x)'); db.commit(); db.close();"
         " os.chmod(d + '/batchtop.sqlite3', 0o666)", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert made.returncode == 0, made.stderr
    before = _files(data_dir)
    got = run_batchtop("--data-dir", str(data_dir), *args, input=json.dumps(openai_line("x")) + "\n", timeout=60)
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert got.stderr.startswith(f"batchtop: {data_dir}: ") and "another user" in got.stderr, got.stderr
    assert "--data-dir" in got.stderr and "Traceback" not in got.stderr, got.stderr
    assert _files(data_dir) == before, "the other user's dir was changed"


def test_a_database_of_another_user_in_our_dir_is_refused(peer: tuple[str, int], data_dir: Path) -> None:
    _seed(data_dir)
    db = data_dir / "batchtop.sqlite3"
    os.chown(db, peer[1], -1)
    os.chmod(db, 0o666)
    for args in _READERS_AND_WRITERS:
        got = run_batchtop("--data-dir", str(data_dir), *args, timeout=60)
        assert got.returncode == 1, (args, got.stdout, got.stderr)
        assert got.stderr.startswith(f"batchtop: {db}: ") and "another user" in got.stderr, got.stderr
    assert db.stat().st_uid == peer[1] and _mode(db) == 0o666
    with pytest.raises(Exception, match="another user"):
        Client(data_dir)


def test_as_the_other_user_a_dir_made_by_root_is_refused(peer: tuple[str, int], shared_tmp: Path) -> None:
    """The same from the other side: the peer is the victim, root pre-created the dir."""
    data_dir = shared_tmp / "data"
    _seed(data_dir)
    os.chmod(data_dir, 0o777)
    os.chmod(data_dir / "batchtop.sqlite3", 0o666)
    got = _as(peer[0], "--data-dir", str(data_dir), "--once", "--no-refresh")
    assert got.returncode == 1 and "another user" in got.stderr, (got.stdout, got.stderr)


@pytest.mark.parametrize("name", ["batchtop.sqlite3", "batchtop.sqlite3-wal", "batchtop.sqlite3-shm"])
def test_a_symlinked_database_or_side_file_is_refused(tmp_path: Path, data_dir: Path, name: str) -> None:
    _seed(data_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = data_dir / name
    if link.exists():
        os.replace(link, elsewhere / name)
    else:
        (elsewhere / name).write_bytes(b"")
    link.symlink_to(elsewhere / name)
    before = (elsewhere / name).read_bytes()
    got = run_batchtop("--data-dir", str(data_dir), "--once", "--no-refresh", timeout=60)
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert got.stderr.startswith(f"batchtop: {link}: ") and "symlink" in got.stderr, got.stderr
    assert link.is_symlink() and (elsewhere / name).read_bytes() == before


def test_a_loose_data_dir_we_cannot_tighten_is_refused(tmp_path: Path, data_dir: Path) -> None:
    import shutil

    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root and chattr to make a dir we own but cannot chmod")
    _seed(data_dir)
    os.chmod(data_dir, 0o755)
    if subprocess.run(["chattr", "+i", str(data_dir)], capture_output=True, check=False).returncode:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        got = run_batchtop("--data-dir", str(data_dir), "--once", "--no-refresh", timeout=60)
    finally:
        subprocess.run(["chattr", "-i", str(data_dir)], check=True)
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert got.stderr.startswith(f"batchtop: {data_dir}: ") and "chmod 700" in got.stderr, got.stderr


# -- 19.9: a config file others can write is refused -------------------------------------


class _Listener:
    """A server that records whether anything connected, and what Authorization it saw."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen: list[str] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                seen.append(self.headers.get("Authorization") or "")
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_another_user_cannot_redirect_our_key_through_a_writable_config(peer: tuple[str, int], shared_tmp: Path) -> None:
    """The review's case: the victim's config is 0666; another user appends a base_url;
    the victim's next tick must refuse the config, not send the key to that server."""
    config = shared_tmp / "config.toml"
    config.write_text("[flush]\nmax_age = 0\n")
    os.chmod(config, 0o666)
    data_dir = shared_tmp / "victim-data"
    _seed(data_dir)
    listener = _Listener()
    try:
        appended = subprocess.run(
            ["runuser", "-u", peer[0], "--", "sh", "-c", 'printf \'[accounts.openai]\\nbase_url = "%s/v1"\\n\' "$1" >> "$2"',
             "sh", listener.url, str(config)], capture_output=True, text=True, timeout=30, check=False)
        assert appended.returncode == 0, appended.stderr
        got = run_batchtop("--data-dir", str(data_dir), "--config", str(config), "tick",
                           env={"OPENAI_API_KEY": "sk-victim-key-4242424242"}, timeout=120)
    finally:
        listener.close()
    assert not listener.seen, f"the key went to the other user's server: {listener.seen}"
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert got.stderr.startswith(f"batchtop: {config}: ") and "chmod go-w" in got.stderr, got.stderr


@pytest.mark.parametrize("mode", [0o666, 0o646, 0o622])
def test_a_config_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    config = _write_config(tmp_path / "config.toml", "[flush]\nmax_age = 0\n")
    os.chmod(config, mode)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}: writable by other users .*chmod go-w"):
        load_config(config, required=True)


def test_a_config_in_a_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    config = _write_config(shared / "config.toml", "[flush]\nmax_age = 0\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}: its directory {re.escape(str(shared))} is writable"):
        load_config(config, required=True)
    got = run_batchtop("--config", str(config), "--data-dir", str(tmp_path / "d"), "--once", "--no-refresh", timeout=60)
    assert got.returncode == 1 and got.stderr.startswith(f"batchtop: {config}: ") and "Traceback" not in got.stderr, got.stderr


def test_a_config_of_ours_in_a_sticky_shared_dir_is_fine(shared_tmp: Path) -> None:
    config = _write_config(shared_tmp / "config.toml", "[flush]\nmax_age = 60\n")
    os.chmod(config, 0o644)
    assert load_config(config, required=True).flush.max_age == 60


def test_a_config_owned_by_another_user_is_refused(peer: tuple[str, int], tmp_path: Path) -> None:
    config = _write_config(tmp_path / "config.toml", "[flush]\nmax_age = 0\n")
    os.chown(config, peer[1], -1)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}: owned by another user"):
        load_config(config, required=True)


def test_a_config_writable_by_a_group_of_others_is_refused_but_our_private_group_is_fine(peer: tuple[str, int], tmp_path: Path) -> None:
    import pwd

    config = _write_config(tmp_path / "config.toml", "[flush]\nmax_age = 0\n")
    os.chmod(config, 0o664)
    os.chown(config, -1, pwd.getpwuid(os.geteuid()).pw_gid)  # our own private group: fine
    assert load_config(config, required=True).flush.max_age == 0
    os.chown(config, -1, pwd.getpwnam(peer[0]).pw_gid)  # the other user's group can write it
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}: writable by other users"):
        load_config(config, required=True)


def test_a_symlinked_config_is_checked_where_it_points(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    real = _write_config(shared / "real.toml", "[flush]\nmax_age = 0\n")
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    assert load_config(link, required=True).flush.max_age == 0  # a dotfiles-style link of ours is fine
    os.chmod(shared, 0o777)
    with pytest.raises(ConfigError, match="is writable by other users"):
        load_config(link, required=True)


def test_keys_echoed_in_batch_and_result_errors_are_redacted() -> None:
    """A provider (or a proxy) that echoes the key into a batch's errors or a result
    line's error: both are stored (batches.last_error, requests.last_error, the
    attempt's line) and printed (`--once`, `dead-letters`)."""
    import openai

    from batchtop.providers import anthropic_batches, openai_batches
    from batchtop.redaction import remember_secret

    key = "zz-custom-shape-KEY-8c8c8c8c"
    remember_secret(key)
    batch = openai.types.Batch.model_validate({
        "id": "batch_1", "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": "file-1",
        "completion_window": "24h", "status": "failed", "created_at": 1_700_000_000,
        "errors": {"object": "list", "data": [{"code": "invalid_api_key", "message": f"key {key} is not valid"}]},
    })
    remote = openai_batches._remote(batch)
    assert remote.error and key not in remote.error and "[redacted]" in remote.error
    lines = [
        openai_batches.parse_result_line(json.dumps({"custom_id": "o1", "response": None, "error": {
            "code": "invalid_api_key", "message": f"Authorization: Bearer {key}"}})),
        openai_batches.parse_result_line(json.dumps({"custom_id": "o2", "response": {"status_code": 401, "body": {
            "error": {"code": "invalid_api_key", "message": f"bad key {key}"}}}})),
        anthropic_batches.parse_result_line(json.dumps({"custom_id": "a1", "result": {"type": "errored", "error": {
            "type": "error", "error": {"type": "authentication_error", "message": f"x-api-key: {key}"}}}})),
    ]
    for line in lines:
        assert line.error and key not in line.error and "[redacted]" in line.error, line
        assert line.response and key not in line.response, line
        json.loads(line.response)  # still the provider's line, as JSON


@pytest.mark.parametrize("command", ["results", "dead-letters"])
def test_readers_refuse_a_data_dir_of_another_user_they_cannot_look_into(peer: tuple[str, int], shared_tmp: Path, command: str) -> None:
    data_dir = shared_tmp / "data"
    _seed(data_dir)  # root's, 0700: the peer cannot even look inside
    got = _as(peer[0], "--data-dir", str(data_dir), command)
    assert got.returncode == 1, (got.stdout, got.stderr)
    assert got.stderr.startswith(f"batchtop: {data_dir}: ") and "another user" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr


def test_a_far_deadline_says_which_way_it_is_off() -> None:
    """`--deadline 1999-01-01` said only "must be within five years of now"."""
    from batchtop.timefmt import checked_deadline, parse_time

    now = parse_time("2026-12-01T00:00:00Z")
    with pytest.raises(ValueError, match="28 years in the past"):
        checked_deadline(parse_time("1999-01-01T00:00:00Z"), now)
    with pytest.raises(ValueError, match="ahead"):
        checked_deadline(now + 10 * 365 * 86400, now)

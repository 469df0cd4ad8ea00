"""A throwaway PostgreSQL server for the tests, CI and the benchmarks: the machine's
own server binaries, a cluster made by `initdb` in a temp dir, `pg_ctl start` on
127.0.0.1 at a free port, password auth over TCP (so the tests see a real password).

    python tests/pg_server.py start DIR   # prints the superuser's URL; the server runs on
    python tests/pg_server.py stop DIR

The server refuses to run as root: run as root, the cluster belongs to (and the server
runs as) the `postgres` user, created by the Debian package.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ENV_URL = "BATCHTOP_TEST_POSTGRES"
"""A running server's superuser URL (`.ci/run` starts one): the tests use it instead
of starting their own."""


def bin_dir() -> Path | None:
    """The newest PostgreSQL server binaries on this machine, if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, when we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _demote(ids: tuple[int, int] | None) -> Callable[[], None] | None:
    if ids is None:
        return None
    uid, gid = ids

    def run() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return run


def start(root: Path) -> str:
    """Make a cluster under `root` and start it; its superuser URL."""
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install -y postgresql)")
    root.mkdir(parents=True, exist_ok=True)
    data, password = root / "data", secrets.token_urlsafe(16)
    ids = _as_user()
    pwfile = root / "pw"
    pwfile.write_text(password + "\n")
    if ids is not None:
        os.chown(root, *ids)
        os.chown(pwfile, *ids)
    root.chmod(0o700)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    demote = _demote(ids)
    subprocess.run(
        [str(bins / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile), "-E", "UTF8",
         "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions"],
        check=True, capture_output=True, env=env, preexec_fn=demote,
    )
    pwfile.unlink()
    port = _free_port()
    with (data / "postgresql.conf").open("a") as conf:
        # a test server: durability of the server itself is not under test (the tests
        # kill clients, never the server), so spare the shared disk its fsyncs
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{root}'\n"
            "max_connections = 300\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "shared_buffers = 128MB\n"
        )
    subprocess.run(
        [str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
        check=True, capture_output=True, env=env, preexec_fn=demote,
    )
    url = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"
    (root / "url").write_text(url)
    if ids is not None:
        os.chown(root / "url", *ids)
    (root / "url").chmod(0o600)
    return url


def stop(root: Path) -> None:
    bins = bin_dir()
    if bins is None or not (root / "data").exists():
        return
    subprocess.run(
        [str(bins / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
        capture_output=True, preexec_fn=_demote(_as_user()),
    )


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("start", "stop"):
        sys.exit(__doc__)
    where = Path(sys.argv[2]).resolve()
    if sys.argv[1] == "start":
        print(start(where))
    else:
        stop(where)

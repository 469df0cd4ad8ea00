"""Getting work out of the store: `batchtop results` and `batchtop dead-letters`.

Both stream from one cursor, so a million results cost the memory of one line, and
both treat a data dir without a database as an empty store (nothing is created).
A results file holds prompts' outputs: it is written 0600, atomically, so a reader
never sees half of it and a failed export leaves any previous file as it was. A
device or FIFO target (`-o /dev/null`, a pipe to another program) is written to, never
replaced; what is neither, or not ours, is refused with a clear error.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from batchtop.display import clean
from batchtop.errors import BatchtopError
from batchtop.store import export_queries
from batchtop.store.db import Connection


@contextmanager
def existing_db(data_dir: Path, *, url: str | None = None, schema: str = "batchtop") -> Iterator[Connection | None]:
    """The store's database if there is one (the data dir's file, or the batchtop
    schema of the PostgreSQL `url`), else None: reading must not create it."""
    from batchtop.store import Store
    from batchtop.store.db import has_database

    if not has_database(data_dir, url, schema):
        yield None
        return

    with Store(data_dir, create=False, url=url, schema=schema) as store:
        yield store.db


@contextmanager
def private_atomic(path: Path) -> Iterator[BinaryIO]:
    """A file that appears at `path` complete, mode 0600, or not at all."""
    path = path.expanduser()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise BatchtopError(f"{path}: cannot write ({exc.strerror})") from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_FD_ALIAS = re.compile(r"/dev/(?:(stdout)|(stderr)|fd/(\d+))|/proc/self/fd/(\d+)")


def _fd_alias(path: Path) -> int | None:
    """The descriptor a name like /dev/stdout or /dev/fd/3 stands for: written through a
    copy of it, as a shell redirection would be, never reopened or replaced."""
    m = _FD_ALIAS.fullmatch(str(path))
    if m is None:
        return None
    if m.group(1):
        return 1
    if m.group(2):
        return 2
    return int(m.group(3) or m.group(4))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _is_stream(mode: int) -> bool:
    """A character device (/dev/null, a terminal) or a FIFO: written to as it is."""
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _target(path: Path) -> tuple[Path, bool]:
    """(where to write, whether it is a stream to write straight to). A symlink is
    followed only when it is ours or root's (like /dev/stdout), never one another user
    planted in a shared dir; a regular file is replaced only when it is ours."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path, False
    follow = stat.S_ISLNK(info.st_mode)
    if follow:
        if info.st_uid not in (os.geteuid(), 0):
            raise BatchtopError(
                f"{path}: a symlink of another user (uid {info.st_uid}); not followed: give the path it points to"
            )
        try:
            info = path.stat()
        except FileNotFoundError:
            return Path(os.path.realpath(path)), False
        if not _is_stream(info.st_mode):
            return _target(Path(os.path.realpath(path)))  # our own link to a file: the file
    if _is_stream(info.st_mode):
        return path, True
    if not stat.S_ISREG(info.st_mode):
        raise BatchtopError(f"{path}: {_kind(info.st_mode)}; give the path of a file to write")
    if info.st_uid != os.geteuid():
        raise BatchtopError(
            f"{path}: owned by another user (uid {info.st_uid}); not replaced: remove it or choose another path"
        )
    return path, False


@contextmanager
def open_export(output: str | None) -> Iterator[BinaryIO]:
    """Where `results` writes: stdout (None or "-"), a descriptor alias (/dev/stdout,
    /dev/fd/N), a character device or FIFO written straight to (never replaced), or a
    file of ours replaced atomically by a private one (`private_atomic`). Nothing else:
    a directory, another user's file, or a symlink another user planted is refused,
    and every OSError becomes a BatchtopError naming the target (exit status 1)."""
    name = "stdout" if output in (None, "-") else str(Path(output).expanduser())
    fd = 1 if output in (None, "-") else _fd_alias(Path(name))
    try:
        if fd in (1, 2):
            std = sys.stdout if fd == 1 else sys.stderr
            std.flush()
            yield std.buffer
            std.buffer.flush()
            return
        if fd is not None:
            with os.fdopen(os.dup(fd), "wb") as out:
                yield out
            return
        path, stream = _target(Path(name))
        if not stream:
            with private_atomic(path) as out:
                yield out
            return
        flags = os.O_WRONLY | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
        opened = os.open(path, flags if path.is_symlink() else flags | os.O_NOFOLLOW)
        if not _is_stream(os.fstat(opened).st_mode):  # swapped since the lstat
            os.close(opened)
            raise BatchtopError(f"{path}: changed while being opened; not written")
        with os.fdopen(opened, "wb") as out:
            yield out
    except BrokenPipeError:
        if fd == 1:
            raise  # stdout's reader went away (`| head`): the CLI's own quiet exit
        raise BatchtopError(f"{name}: the reader went away before the export was written") from None
    except OSError as exc:
        raise BatchtopError(f"{name}: cannot write ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class Written:
    """What an export wrote, and anything the operator should know about it."""

    count: int
    note: str | None = None


def _batch_filter(db: Connection, batch_id: str) -> tuple[int, str | None]:
    """(local id, note) of a provider batch id; BatchtopError when there is no such batch."""
    batch = export_queries.export_batch(db, batch_id)
    if batch is None:
        raise BatchtopError(f"no batch {batch_id!r} in this data dir")
    note = None
    if batch.ingested_at is None:
        note = f"batch {batch_id} is {batch.status}: only the results stored so far are written"
    return batch.local_id, note


def write_results(db: Connection | None, out: BinaryIO, batch_id: str | None = None) -> Written:
    """The provider's raw result line (it carries the custom_id) of each request's latest
    success, as JSONL; only those of one provider batch when `batch_id` is given."""
    if db is None:
        if batch_id is not None:
            raise BatchtopError(f"no batch {batch_id!r} in this data dir (it has no database yet)")
        return Written(0)
    local, note = _batch_filter(db, batch_id) if batch_id is not None else (None, None)
    count = 0
    for responses in export_queries.results_stream(db, local):
        for response in responses:
            out.write(response.rstrip("\r\n").encode("utf-8") + b"\n")
        count += len(responses)
    if batch_id is None:  # issue 15: answers of the synchronous lanes, in the same result-line shape
        from batchtop.store.realtime import responses as realtime_responses

        for response in realtime_responses(db):
            out.write(response.rstrip("\r\n").encode("utf-8") + b"\n")
            count += 1
    return Written(count, note)


def dead_letters(db: Connection | None) -> Iterator[dict[str, Any]]:
    """Requests that used up their attempts, oldest first, with their model and last error."""
    if db is None:
        return
    from batchtop.timefmt import iso

    for d in export_queries.dead_letters(db):
        yield {
            "custom_id": d.custom_id,
            "provider": d.provider,
            "model": d.model,
            "endpoint": d.endpoint,
            "attempts": d.attempts,
            "last_error": d.last_error,
            "last_batch_id": d.last_batch_id,
            "failed_at": iso(d.failed_at),
            "enqueued_at": iso(d.enqueued_at),
        }


# json.dumps escapes C0 controls but leaves DEL, C1 controls (\x9b is CSI to some
# terminals) and bidi overrides raw when it keeps non-ASCII text readable; they can only
# occur inside JSON strings, so escaping them keeps every value exact.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _json_text(item: dict[str, Any]) -> str:
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(item, ensure_ascii=False))


def write_dead_letters_json(db: Connection | None, out: TextIO) -> Written:
    """A JSON array, one object per line, written as the cursor yields them."""
    count = 0
    out.write("[")
    for item in dead_letters(db):
        out.write(("\n" if not count else ",\n") + _json_text(item))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return Written(count)


_TEXT_COLUMNS = ("CUSTOM_ID", "PROVIDER", "MODEL", "ATTEMPTS", "LAST_BATCH", "LAST_ERROR")


def write_dead_letters_text(db: Connection | None, out: TextIO) -> Written:
    """An aligned table; the column widths come from one aggregate query, so the rows
    still stream instead of being held to measure them."""
    widths = [len(c) for c in _TEXT_COLUMNS[:-1]]
    if db is not None:
        found = export_queries.dead_letter_widths(db)
        widths = [max(w, n or 0) for w, n in zip(widths, found)]

    def row(cells: list[str]) -> str:
        # Every cell is provider content or a name taken as data: cleaned, so no escape
        # sequence reaches the terminal (a cleaned hostile cell may outgrow its column).
        cells = [clean(c) for c in cells]
        body = "  ".join(c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return f"{body}  {cells[-1]}".rstrip() + "\n"

    count = 0
    for d in export_queries.dead_letters(db) if db is not None else ():
        if not count:
            out.write(row(list(_TEXT_COLUMNS)))
        error = " ".join(clean(d.last_error or "-").split())
        out.write(row([d.custom_id, d.provider, d.model, str(d.attempts), d.last_batch_id or "-", error]))
        count += 1
    out.write(f"{count} dead letter{'s' if count != 1 else ''}\n" if count else "no dead letters\n")
    return Written(count)

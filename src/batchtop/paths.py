"""Where batchtop keeps its state and config, with CLI/env overrides."""

from __future__ import annotations

import os
import stat
from pathlib import Path

DB_NAME = "batchtop.sqlite3"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data dir: --data-dir, then BATCHTOP_DATA_DIR, then the platform default."""
    chosen = override or os.environ.get("BATCHTOP_DATA_DIR")
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("batchtop"))


def config_file(override: str | os.PathLike[str] | None = None) -> Path:
    """The config file: --config, then BATCHTOP_CONFIG, then the platform default."""
    chosen = override or os.environ.get("BATCHTOP_CONFIG")
    if chosen:
        return Path(chosen).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("batchtop")) / "config.toml"


def ensure_private_dir(path: Path) -> Path:
    """Create the dir 0700 if it is missing (it holds prompts and outputs), then check
    it as `check_private_dir` does: it may have been there before us."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private_dir(path)
    return path


_DATA_DIR_FIX = "use a data dir of your own (--data-dir DIR or BATCHTOP_DATA_DIR)"


def check_private_dir(path: Path) -> None:
    """The data dir is ours and private, or StoreError saying why and what to do.

    Another user's dir is refused (they could read every prompt, or plant a database
    for us to fill); ours with group or other bits is tightened to 0700, and refused if
    that fails. The dir may be a symlink of ours or root's, never one another user
    planted."""
    from batchtop.errors import StoreError

    me = os.geteuid()
    try:
        link = path.lstat()
        info = path.stat()
    except FileNotFoundError:
        raise StoreError(f"{path}: no such data dir") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot use the data dir ({exc.strerror})") from None
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (me, 0):
        raise StoreError(f"{path}: a symlink of another user (uid {link.st_uid}); not followed: {_DATA_DIR_FIX}")
    if not stat.S_ISDIR(info.st_mode):
        raise StoreError(f"{path}: not a directory: {_DATA_DIR_FIX}")
    if info.st_uid != me:
        raise StoreError(
            f"{path}: the data dir is owned by another user (uid {info.st_uid}; you are uid {me}), who could read"
            f" or change your prompts and results; not used: {_DATA_DIR_FIX}"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise StoreError(
                f"{path}: the data dir is mode {stat.S_IMODE(info.st_mode):04o} and could not be made private"
                f" ({exc.strerror}); fix it with `chmod 700 {path}`, or {_DATA_DIR_FIX}"
            ) from None

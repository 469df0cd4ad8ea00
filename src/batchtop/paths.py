"""Where batchtop keeps its state and config, with CLI/env overrides."""

from __future__ import annotations

import os
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
    """Create the dir 0700: it holds prompts and outputs."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(path, 0o700)
    except PermissionError:  # pragma: no cover - not ours to fix
        pass
    return path

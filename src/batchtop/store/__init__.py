"""The SQLite store: one file, WAL, every state change in one transaction."""

from batchtop.store.db import connect
from batchtop.store.store import BufferKey, Store

__all__ = ["BufferKey", "Store", "connect"]

"""The SQLite store: one file, WAL, every state change in one transaction.

The one owner of SQL: everything else calls `Store`'s typed methods or the read
modules here, and names an open store `Connection` (never `sqlite3`).
"""

from batchtop.store.db import Connection, StoreBusy, connect
from batchtop.store.store import BufferKey, Store

__all__ = ["BufferKey", "Connection", "Store", "StoreBusy", "connect"]

"""Stores: SQLite (embedded, durable), in-memory (tests)."""

from durably.server.store.base import Batch, Store
from durably.server.store.memory import MemoryStore
from durably.server.store.sqlite import SQLiteStore

__all__ = ["Batch", "MemoryStore", "SQLiteStore", "Store"]

"""Persistence: the SQLAlchemy base, the engine and session factory, and migrations."""

from livecast.store.base import Base, new_id, utcnow
from livecast.store.db import Database

__all__ = ["Base", "Database", "new_id", "utcnow"]

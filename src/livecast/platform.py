"""The running platform: settings plus the backends every role shares.

One :class:`Platform` per process. Domains hang their long-lived state off it
(``platform.state["chat"]``...) so that tests can start several independent platforms in one
process, which module-level globals would forbid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from livecast.bus import Bus, create_bus
from livecast.config import Settings
from livecast.storage import ObjectStore, create_store
from livecast.store.db import Database

log = logging.getLogger("livecast")


@dataclass
class Platform:
    settings: Settings
    db: Database
    bus: Bus
    storage: ObjectStore
    started_at: float = field(default_factory=time.time)
    state: dict[str, Any] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Platform:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.resolved_database_url)
        if migrate:
            await db.upgrade()
        bus = create_bus(settings.bus_url, settings.event_stream_maxlen)
        await bus.start()
        storage = create_store(settings.resolved_storage_url)
        return cls(settings=settings, db=db, bus=bus, storage=storage)

    async def close(self) -> None:
        await self.bus.close()
        await self.db.close()

    def base_url(self) -> str:
        return self.settings.base_url(self.ports.get("http"))

"""Waiting for an ``asyncio.Event`` with a time limit, in loops that are cancelled to stop.

Why not ``asyncio.wait_for(event.wait(), t)``: on Python 3.11 it returns, dropping the cancel,
when the cancel lands just as the event is set, and the loop then runs on after its service
stopped. ``asyncio.timeout`` runs in the waiting task itself, so a cancel always arrives.
"""

from __future__ import annotations

import asyncio


async def until_set(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set or ``timeout`` seconds pass; True when it was set."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True

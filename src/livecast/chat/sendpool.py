"""Writing a big room's pass from several threads.

A pass is one ``send`` per connection, and most of a send's cost is kernel time: TCP, the copy,
waking the reader (on loopback, the reader's side of TCP too). ``os.write`` releases the GIL for
that time, so threads writing disjoint slices of a chunk spread it over cores. Measured with
``bench chat`` at 15,000 connections x 100 msg/s on a 16-core host, before rooms wrote in
rounds: p50 177 -> 94 ms and p99 585 -> 391 ms with 4 threads. On a 2-core host the load
generators already use the second core and it made no difference, so there the default is the
loop thread alone.

Only a plain TCP socket whose transport holds nothing unsent is written this way, and only from
inside one loop callback that waits for every thread: nothing else can write to that socket
meanwhile, and the rest of a short write goes to the transport before the loop runs anything
else, so the bytes keep their order and the transport its buffer and back-pressure.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

# (index into the items, bytes written, or -1 for an error the transport should see for itself)
Short = tuple[int, int]


def auto_threads(cpus: int | None) -> int:
    """1 on two cores or fewer (the loop thread alone), else up to 4."""
    cpus = cpus or 1
    return 1 if cpus <= 2 else min(4, cpus // 2)


def write_each(items: list[tuple[int, bytes]]) -> list[Short]:
    """Write each buffer straight to its socket (non-blocking); report the ones not written whole."""
    short: list[Short] = []
    write = os.write
    for i, (fd, data) in enumerate(items):
        try:
            n = write(fd, data)
        except BlockingIOError:
            n = 0
        except OSError:
            n = -1
        if n != len(data):
            short.append((i, n))
    return short


class SendPool:
    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="chat-send") if threads > 1 else None

    def write(self, items: list[tuple[int, bytes]]) -> list[Short]:
        """Write every item, ``threads`` slices at once (one on the calling thread), and return
        when all are done; the shorts' indexes are into ``items``."""
        n = self.threads
        if self._pool is None or len(items) < 2 * n:
            return write_each(items)
        futures = [(k, self._pool.submit(write_each, items[k::n])) for k in range(1, n)]
        shorts = [(i * n, w) for i, w in write_each(items[0::n])]
        for k, future in futures:
            shorts.extend((k + i * n, w) for i, w in future.result())
        return shorts

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

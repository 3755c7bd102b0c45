"""Durable scheduled jobs for subscriptions (period ends): table ``sub_jobs`` under the shared
lease queue (:mod:`livecast.store.leases`), retried after 30 s, 1 min, 2 min... eight times."""

from __future__ import annotations

import datetime as dt

from livecast.store.leases import LeaseQueue
from livecast.subscriptions.models import Job

LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 8


QUEUE = LeaseQueue(Job, lease=LEASE, max_attempts=MAX_ATTEMPTS, backoff=lambda attempts: 30 * 2**attempts)
claim = QUEUE.claim
finish = QUEUE.finish
retry_later = QUEUE.retry_later

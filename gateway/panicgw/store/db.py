"""The gateway DB as one object: a connection (panicgw.store.connection) with every
repository's queries.

Durability rules (docs/gateway.md explains them):
- WAL with ``synchronous=FULL``: a commit has reached the disk before we ACK STORED.
- An event, its outbox row and the device's replay-window state are written in ONE
  transaction, so a crash either keeps all three or none (and the button's retry is then
  a new frame to us, never a lost or doubled alarm).
- Heartbeat history is pruned by age; nothing with an undelivered outbox row is ever pruned.
- The DB file (and so its -wal/-shm) is 0600: it holds device keys.
"""

from __future__ import annotations

from panicgw.store.events import EventRepository
from panicgw.store.outbox import OutboxRepository
from panicgw.store.supervision import SupervisionRepository


class Store(EventRepository, SupervisionRepository, OutboxRepository):
    """One connection, used from one thread (a lane of the daemon's store service, or a
    CLI); see :class:`~panicgw.store.connection.Connection` for the ways to open it."""

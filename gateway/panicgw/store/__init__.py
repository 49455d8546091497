"""The gateway's SQLite store: the schema and every query on it (no SQL lives elsewhere).

- :mod:`.schema`: migrations; :mod:`.connection`: opening the DB (created and migrated by
  the daemon, read-write or ``mode=ro`` for tools, refusing a file without the schema);
- repositories by subject: :mod:`.meta`, :mod:`.devices` (the registry), :mod:`.events`
  (events, receptions, incidents), :mod:`.supervision` (device state, heartbeats),
  :mod:`.outbox`; :class:`Store` (:mod:`.db`) has them all on one connection;
- :mod:`.inspect`: the read-only views of the technician's commands (diag, events, monitor);
- :mod:`.service`: the daemon's single writer and its read lanes.
"""

from panicgw.store.db import Store
from panicgw.store.errors import USE_THE_GATEWAYS_DB, StoreError
from panicgw.store.outbox import PRIO_ALARM, PRIO_EVENT, PRIO_OTHER, PRIO_TROUBLE, OutboxItem
from panicgw.store.schema import MIGRATIONS
from panicgw.store.supervision import Candidate, DeviceState

__all__ = ["MIGRATIONS", "PRIO_ALARM", "PRIO_EVENT", "PRIO_OTHER", "PRIO_TROUBLE",
           "USE_THE_GATEWAYS_DB", "Candidate", "DeviceState", "OutboxItem", "Store",
           "StoreError"]

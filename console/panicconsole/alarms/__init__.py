"""The queue's rules: what an accepted dispatch document does to the operators' screens, and
what operators can do to a line. Every function that writes runs inside the writer's
transaction (``conn``) and records what changed in the live feed (``feed``) and the audit
trail (``audit``).

Queue order: priority (1 panic/hold-up, 2 tamper, 3 trouble: supervision lost, low battery,
gateway trouble or silence, 4 trouble already restored), then age, oldest first. Installer
tests, check-ins, cancels and restores never open a line: they are logged (the event log
and the site's history); a restore marks the trouble line it ends, a cancel marks the
panic it follows.

One job per module: ``rules`` (priorities, dispositions, refusals), ``directory`` (sites and
devices), ``lines`` (opening and finding queue lines), ``intake`` (a dispatch document),
``gateway_watch`` (gateways heard, in trouble, silent), ``escalation``, ``ownership`` (take,
take over), ``handling`` (plan steps, notes, closing), ``views`` (what the screens get),
``feed``, ``audit``, ``history`` (the site card) and ``retention`` (pruning).
"""

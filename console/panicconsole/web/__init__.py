"""The console's one process: the dispatch endpoint for gateways and the operators' web app.

- ``POST /v1/events``: the dispatch contract (contract.py), answered 2xx only after the
  document and its effect on the queue are committed to SQLite.
- Pages (``/``, ``/login``, ``/admin``) and a JSON API under ``/api`` for signed-in users;
  every state change needs the session's CSRF token; roles gate what each user may do;
  every refusal is logged (and audited when someone is signed in).
- ``GET /api/stream``: server-sent events. Every change has a number (``changes.seq``); a
  browser that reconnects asks for the changes after the last number it saw, so it neither
  misses nor repeats one. A heartbeat carries the server's clock: a screen that stops hearing
  it says so at once.

``app`` starts and stops it all and wires the areas, each a module: ``dispatch`` (the
gateways' door), ``guard`` (security headers, sessions, CSRF), ``pages`` and ``login``,
``live`` (state and stream), ``operator``, ``supervisor`` and ``admin`` (their APIs);
``context`` is what they share.
"""

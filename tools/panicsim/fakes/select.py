"""``select``: poll() with MicroPython's ``ipoll`` (CircuitPython's asyncio waits with
it); with nothing registered it sleeps on the simulated clock, and on a VirtualClock it
never blocks in real time (time moves on while the sockets have nothing)."""

import select as _host
from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    clock = b.clock

    class _Poll:
        def __init__(self) -> None:
            self._p = _host.poll()
            self._n = 0

        def register(self, obj, mask=_host.POLLIN | _host.POLLOUT) -> None:
            self._p.register(obj, mask)
            self._n += 1

        def modify(self, obj, mask) -> None:
            self._p.modify(obj, mask)

        def unregister(self, obj) -> None:
            self._p.unregister(obj)
            self._n -= 1

        def poll(self, timeout=-1):
            b.check_alive()
            if self._n == 0:
                if timeout is not None and timeout >= 0:
                    clock.sleep(timeout / 1000.0, b.halt)
                return []
            if not clock.virtual:  # ms of simulated time -> ms of real time
                return self._p.poll(None if timeout is None or timeout < 0
                                    else clock.real_seconds(timeout))
            ready = self._p.poll(0)  # virtual time: never block in real time
            if ready or timeout == 0:
                return ready
            end = None if timeout is None or timeout < 0 else clock.now() + timeout / 1000.0
            clock.wait_until(end, b.halt, wake=lambda: bool(self._p.poll(0)))
            return self._p.poll(0)

        def ipoll(self, timeout=-1, flags=0):
            return iter(self.poll(timeout))

    return SimpleNamespace(poll=_Poll, POLLIN=_host.POLLIN, POLLOUT=_host.POLLOUT,
                           POLLERR=_host.POLLERR, POLLHUP=_host.POLLHUP)

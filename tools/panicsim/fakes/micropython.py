"""``micropython``: ``const`` and the code-emitter decorators as identities."""

from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    return SimpleNamespace(const=lambda v: v, native=lambda f: f, viper=lambda f: f,
                           opt_level=lambda *a: 0, mem_info=lambda *a: None)

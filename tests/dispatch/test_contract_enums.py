"""One truth for site kinds and reception paths: the dispatch schema's enums, which the
console reads through panicgw.forward.contract; the gateway's registry (which may not import
forward/) keeps its own tuples, and they must be the same."""

from __future__ import annotations

from panicconsole import sites
from panicgw import registry
from panicgw.forward import contract


def test_registry_site_kinds_and_paths_are_the_schemas() -> None:
    assert contract.SITE_KINDS == ("shop", "home")
    assert registry.SITE_KINDS == contract.SITE_KINDS
    assert registry.PATHS == contract.PATHS == ("lora", "wifi")


def test_the_console_checks_with_the_contracts() -> None:
    assert sites.SITE_KINDS is contract.SITE_KINDS and sites.PATHS is contract.PATHS

"""Everything registered, in one place: the workloads, and through their tagged
sections every case, integrator, optimiser and model. Each registry declares its
entries with their config dataclasses (torch-free), so importing this module and
validating a config import no implementation; ``REGISTRY.get`` imports one when a run
needs it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from insr_hpc.config import load as _load
from insr_hpc.workloads import WORKLOADS


class _Catalog:
    def config_class(self, workload: str) -> type:
        if WORKLOADS.loaded(workload) or workload not in WORKLOADS:  # registered directly, or unknown: get says so
            return WORKLOADS.get(workload).config_class
        return WORKLOADS.params(workload)

    def tagged_sections(self, workload: str) -> Mapping[str, tuple[str, Any]]:
        declared = WORKLOADS.capabilities(workload).get("tagged_sections")
        return declared if declared is not None else WORKLOADS.get(workload).tagged_sections


CATALOG = _Catalog()


def load_config(path, overrides: Sequence[str] = (), notes: list[str] | None = None):
    """A validated Config from a YAML file and ``key=value`` overrides. An override that
    switches a tagged section's class (``optim.name=…``) drops the file's keys the new
    class lacks; the note saying so goes to ``notes``, or to stderr when it is None."""
    return _load.load_config(path, overrides, CATALOG, notes)


def build_config(data: Mapping[str, Any]):
    """A validated Config from plain data (e.g. a RunSpec's resolved config; one written
    before a key was renamed is read as it was then: :func:`~insr_hpc.config.load.rename_keys`)."""
    return _load.build_config(_load.rename_keys(data, resolved=True)[0], CATALOG)


def decode_config(data: Mapping[str, Any]):
    """The typed Config of plain data that was validated already (a planned RunSpec's
    config, its digest intact, so written with today's keys): converted only, not
    validated again."""
    return _load.typed_config(data, CATALOG)

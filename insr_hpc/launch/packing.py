"""Grouping a sweep's runs into packs (``launch.pack: k``): runs whose workload says
they may share a process (:func:`insr_hpc.pde.pack.pack_key`) are taken k at a time, in
sweep order; runs that differ in shape go to different packs. Checked at plan time,
so a sweep that cannot be packed is refused before anything is written."""

from __future__ import annotations

from collections.abc import Sequence

from insr_hpc.errors import ConfigError
from insr_hpc.workloads import WORKLOADS



def packing_backends() -> list[str]:
    """The backends that declare ``can_pack``."""
    from insr_hpc.launch.base import BACKENDS

    return [name for name in BACKENDS.names() if BACKENDS.get(name).can_pack]


def pack_key_of(config: dict) -> str:
    workload = WORKLOADS.get(config.get("workload", "pde"))
    key = getattr(workload, "pack_key", None)
    if key is None:
        raise ConfigError("launch.pack", f"runs of workload '{config.get('workload')}' cannot be packed; "
                          "use launch.pack=1")
    return key(config)


def check_packing(specs: Sequence, configs: Sequence, backend: str | None = None) -> None:
    """Refuse (ConfigError on ``launch.pack``) a sweep whose runs ask for packing but
    cannot be packed: an unpackable case, optimiser or workload, DDP, or a backend
    (``backend``, else each config's ``launch.backend``) that does not pack."""
    from insr_hpc.launch.base import BACKENDS

    for spec, cfg in zip(specs, configs, strict=True):
        if cfg.launch.pack <= 1:
            continue
        name = backend or cfg.launch.backend
        if not BACKENDS.get(name).can_pack:
            raise ConfigError("launch.pack", f"the {name} backend runs one run per job; packing is "
                              f"done by {', '.join(packing_backends())}; use launch.pack=1")
        pack_key_of(spec.config)


def make_packs(specs: Sequence, k: int) -> list[list]:
    """Specs in packs of at most ``k`` compatible runs (sweep order kept within a pack)."""
    if k <= 1:
        return [[s] for s in specs]
    groups: dict[str, list] = {}
    for spec in specs:
        groups.setdefault(pack_key_of(spec.config), []).append(spec)
    packs = []
    for members in groups.values():
        packs.extend(members[i : i + k] for i in range(0, len(members), k))
    return packs

"""``insr-hpc verify STORE|DIR``: prove each store's integrity (every ``zarr.json`` parsed
and checked against the digests recorded at creation, checksums of every chunk and every
committed step), one line per store; a damaged file is named (``DAMAGED: STORE:
'weights/zarr.json': is not valid JSON (…)``).

A run whose state says ``done`` (or ``suspect``) but whose store is damaged becomes
``failed`` with the damage as its reason, so the next ``submit`` recomputes the damaged
steps (resume un-commits them) instead of skipping the run as finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from insr_hpc.analysis.stores import find_stores
from insr_hpc.errors import InsrError
from insr_hpc.rundir import RunDir
from insr_hpc.store import StepStore, StoreFormatError


@dataclass
class StoreCheck:
    path: str
    ok: bool
    line: str


def verify_store(path: str) -> StoreCheck:
    try:
        report = StepStore.open(path, mode="r").verify()
    except StoreFormatError as exc:
        return StoreCheck(path, False, f"DAMAGED: {exc}")
    return StoreCheck(path, report.ok, report.line())


def stores_under(target: str) -> list[str]:
    if not os.path.exists(target):
        raise InsrError(f"verify: '{target}' does not exist")
    if StepStore.exists(target) or target.rstrip("/").endswith(".zarr"):
        return [target]
    stores = find_stores(target)
    if not stores:
        raise InsrError(f"verify: no store.zarr under '{target}'")
    return stores


def verify(target: str, mark_runs: bool = True) -> list[StoreCheck]:
    """Check every store at or under ``target``; mark finished runs with damaged stores failed."""
    checks = [verify_store(p) for p in stores_under(target)]
    if mark_runs:
        for check in checks:
            rd = RunDir(os.path.dirname(os.path.abspath(check.path)))
            if check.ok or not os.path.exists(rd.state_file):
                continue
            if rd.read_state().get("state") in ("done", "suspect") and rd.holder() is None:
                rd.transition("failed", f"store damaged ({check.line.split(': ', 2)[-1][:200]}); "
                              "submit again to recompute from the last intact step")
    return checks

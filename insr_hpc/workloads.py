"""The workload registry (``workload: pde | recon``) and rules shared by workloads.

A workload entry has ``config_class`` (its typed Config), ``tagged_sections``
(section → (tag key, registry)) and ``run(cfg, run_dir, env, run_id) -> summary``;
both built-in workloads are declared below with their config class and tagged sections
(torch-free), so a config is validated without importing a workload's module;
one that can solve several runs in one process also has ``pack_key(config)`` and
``run_pack(runs, env, ended, should_drop)``, reporting each run's end as an
:class:`Ended`. A workload names the files of its run directory through
:class:`~insr_hpc.rundir.RunDir` and never decides a run's state: ``run.execute`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from insr_hpc.config.load import config_to_dict
from insr_hpc.errors import InsrError
from insr_hpc.pde.config import TAGGED_SECTIONS as PDE_SECTIONS
from insr_hpc.pde.config import PDEConfig
from insr_hpc.recon.config import TAGGED_SECTIONS as RECON_SECTIONS
from insr_hpc.recon.config import ReconConfig
from insr_hpc.registry import Registry

if TYPE_CHECKING:
    from insr_hpc.store import StepStore

# capability ``tagged_sections``: section → (tag key, registry), as the entry's own attribute
WORKLOADS: Registry = Registry("workload", "workload", capabilities=("tagged_sections",))
WORKLOADS.default = "pde"
WORKLOADS.declare("pde", "insr_hpc.pde.workload:PDEWorkload", PDEConfig, tagged_sections=PDE_SECTIONS)
WORKLOADS.declare("recon", "insr_hpc.recon.workload:ReconWorkload", ReconConfig, tagged_sections=RECON_SECTIONS)

# Keys that may change between a run and its resumption: they do not change results.
RESUME_FREE = ("name", "launch", "sweep", "device", "guard", "output.root", "output.overwrite", "output.log_every", "output.figure_every")
# Keys that may grow: the run is extended (its store made longer, every step kept).
GROWABLE = ("time.steps",)


@dataclass(frozen=True)
class Ended:
    """How one run of a pack ended: its summary, the exception that ended it alone, or
    the reason it was dropped at a step boundary (a cancel)."""

    summary: Any = None
    error: BaseException | None = None
    dropped: str | None = None


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_conflict(stored: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first key (key, stored value, current value) that forbids resuming a store
    written with ``stored`` under ``current``, or None. A key of ``GROWABLE`` may grow."""
    a, b = _flatten(stored), _flatten(current)

    def free(key: str) -> bool:
        return any(key == k or key.startswith(k + ".") for k in RESUME_FREE)

    for key in sorted(set(a) | set(b)):
        if free(key) or a.get(key) == b.get(key):
            continue
        if key in GROWABLE and isinstance(a.get(key), int) and isinstance(b.get(key), int) and b[key] > a[key]:
            continue
        return key, a.get(key), b.get(key)
    return None


def config_steps(config: Mapping[str, Any]) -> int | None:
    """``time.steps`` of a config as plain data (None: a workload without time steps)."""
    block = config.get("time")
    value = block.get("steps") if isinstance(block, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def extends(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Does ``current`` ask for more time steps than the store written with ``stored`` holds?"""
    was, now = config_steps(stored), config_steps(current)
    return was is not None and now is not None and now > was


def check_resumable(stored: Mapping[str, Any], current: Mapping[str, Any], path: str) -> None:
    """Refuse to resume a store written with a config that changes results."""
    conflict = resume_conflict(stored, current)
    if conflict is not None:
        key, was, now = conflict
        grow = f" ({key} may only grow: the run is then extended)" if key in GROWABLE else ""
        raise InsrError(
            f"store '{path}' was written with {key}={was!r}, this run has {key}={now!r}{grow}; "
            "use another output.root or output.overwrite=true"
        )


def check_store_resumable(path: str, config: Mapping[str, Any]) -> None:
    """Refuse (InsrError) to resume the store at ``path`` with ``config`` (plain data) if
    it was written with a config that changes results; nothing if there is no store."""
    from insr_hpc.store import StepStore, json_safe  # zarr: imported when a store is read

    path = StepStore.readable_path(path)
    if not StepStore.exists(path):
        return
    stored = StepStore.read_attrs(path).get("config", {})
    check_resumable(stored, json_safe(dict(config)), path)


def reopen_store(path: str, log: Callable[[str], None] = print) -> StepStore | None:
    """The run's existing store, verified: a committed step whose data is missing or
    damaged is un-committed (with every step after it), so the run recomputes it;
    ``log`` says so. None if there is no store. (Whether this config may resume the store
    was checked once, by ``run.execute``, under the run's lock.)"""
    from insr_hpc.store import StepStore

    recovered = StepStore.recover(path)
    if recovered is not None:
        log(f"store: {recovered}")
    if not StepStore.exists(path):
        return None
    store = StepStore.open(path)
    repaired = store.repair()
    if repaired is not None:
        log(f"store verification: {repaired}")
    return store


def hparams(cfg: Any, sections: tuple[str, ...]) -> dict[str, Any]:
    """``section.key`` → value for TensorBoard's hparams summary (plus the seed)."""
    data = config_to_dict(cfg)
    flat = _flatten({s: data.get(s) or {} for s in sections})
    flat["seed"] = cfg.seed
    return flat

"""One run's results as plain data: what ``insr-hpc report`` gathers from every store.

A :class:`RunRecord` holds a run's identity (id, swept values, state), its per-record
scalar series (PDE: per ``step``; reconstruction: per ``epoch``) with uncommitted
records set to NaN, and a few totals. Records are small and picklable, so MPI ranks
build them from their share of the stores and rank 0 assembles them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insr_hpc.rundir import RunDir
from insr_hpc.store import BOOKKEEPING, StepStore, StoreFormatError, decode_attrs

# The error a sweep is ranked by, per workload, and the other final metrics reported.
PRIMARY_ERROR = {"pde": "rel_l2", "recon": "mse"}
RECORD_DIM = {"pde": "step", "recon": "epoch"}
REQUIRED = {"pde": ("committed", "rel_l2", "seconds", "iterations"), "recon": ("committed", "mse", "seconds", "loss")}


class BadStore(Exception):
    """A store the report cannot use; the message says what is wrong with it."""


@dataclass
class RunRecord:
    run: str  # run directory relative to the report root, e.g. "r003-dt=0.1_width=32"
    swept: dict[str, Any]  # swept key → this run's value (plain scalars or a label)
    state: str  # done | failed | running | pending | cancelled (run.json), "partial" refined below
    reason: str = ""
    workload: str = ""
    case: str = ""  # PDE case, or the reconstructed variable
    model: str = ""
    steps_done: int = 0
    steps_total: int = 0
    n_params: int = 0
    iterations_total: int = 0  # optimiser iterations over every committed step and sub-problem
    capped_substeps: int | None = None  # sub-problems stopped at their iteration cap (None: store predates ``capped``)
    seconds_total: float = float("nan")  # wall time of the committed records, step 0's fit included
    # PDE: mean wall time of the committed steps after step 0 (NaN with none); reconstruction: per epoch
    seconds_per_step: float = float("nan")
    fit_seconds: float = float("nan")  # PDE: wall time of step 0, the initial fit (reconstruction: NaN)
    series: dict[str, np.ndarray] = field(default_factory=dict)  # name → (records,) float64
    series_attrs: dict[str, dict[str, str]] = field(default_factory=dict)  # name → the store's long_name/units
    coord: np.ndarray | None = None  # the record dim's physical coordinate (time, epoch)
    final: dict[str, float] = field(default_factory=dict)  # metric → value at the last record
    # the case's classical solver at equal memory, at the last record (Euler: grid_linear_rel_l2 …)
    baselines: dict[str, float] = field(default_factory=dict)
    worst: dict[str, float] = field(default_factory=dict)  # metric → max over committed records
    # reconstruction: a warning that is not a failure, e.g. thin validation evidence ("" none, or a store from before it)
    warning: str = ""
    validation_clusters: int | None = None  # independent validation clusters (None: not recorded)

    @property
    def primary(self) -> str:
        return PRIMARY_ERROR.get(self.workload, "rel_l2")

    @property
    def record_dim(self) -> str:
        return RECORD_DIM.get(self.workload, "step")


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or not UTF-8
        return {}


def sweep_label(value: Any) -> Any:
    """A swept value as a coordinate: scalars as they are, a whole section (dict) by its
    ``model`` / ``name`` plus its other keys, lists as text."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        head = value.get("model") or value.get("name")
        rest = ",".join(f"{k}={v}" for k, v in value.items() if k not in ("model", "name"))
        return f"{head}({rest})" if head else rest
    return json.dumps(value, sort_keys=True)


def collect_run(run_dir: str, root: str) -> RunRecord:
    """Read one run directory (run.json, spec.json, store.zarr). Raises BadStore when the
    store exists but cannot be used (unknown version, missing array, corrupt attribute)."""
    rd = RunDir(run_dir)
    state = _read_json(rd.state_file)
    spec = _read_json(rd.spec)
    overrides = spec.get("overrides") or state.get("overrides") or {}
    rec = RunRecord(
        run=os.path.relpath(run_dir, root),
        swept={k: sweep_label(v) for k, v in overrides.items()},
        state=str(state.get("state", "pending")),
        reason=str(state.get("reason") or ""),
        workload=str((spec.get("config") or {}).get("workload", "pde")),
    )
    path = rd.store
    if not os.path.exists(path):
        return rec  # failed or pending before its store was created: present, no series
    try:
        ds = StepStore.dataset(path)
    except StoreFormatError as exc:  # the report prefixes the path itself
        msg = str(exc)
        raise BadStore(msg.removeprefix(f"store '{path}': ")) from exc
    attrs = decode_attrs(ds.attrs)  # nested attributes (config, …) are JSON text in the store
    rec.workload = str(attrs.get("workload", rec.workload))
    if rec.workload not in PRIMARY_ERROR:
        raise BadStore(f"attribute workload={rec.workload!r} is not pde or recon")
    missing = [name for name in REQUIRED[rec.workload] if name not in ds.variables]
    if missing:
        raise BadStore(f"missing array {', '.join(repr(m) for m in missing)}")
    config = attrs.get("config")
    if not isinstance(config, dict):
        raise BadStore(f"attribute 'config' is {type(config).__name__}, expected a mapping")
    rec.case = str(attrs.get("case") or attrs.get("variable") or "")
    rec.model = str(attrs.get("model", ""))
    committed = np.asarray(ds["committed"].values).astype(bool)
    n = int(np.argmin(committed)) if not committed.all() else committed.size
    rec.steps_done, rec.steps_total = n, int(committed.size)
    dim = rec.record_dim
    keep = np.arange(committed.size) < n  # the leading committed records; later ones are NaN

    def series(values: np.ndarray) -> np.ndarray:
        out = np.asarray(values, dtype=np.float64).copy()
        out[~keep] = np.nan
        return out

    for name, var in ds.data_vars.items():
        if name in BOOKKEEPING or not var.dims or var.dims[0] != dim:  # committed, checksum: not results
            continue
        if var.dims == (dim,) and np.dtype(var.dtype).kind in "fiu":
            rec.series[name] = series(var.values)
            rec.series_attrs[name] = {k: str(var.attrs[k]) for k in ("long_name", "units", "standard_name")
                                      if k in var.attrs}
    # reductions over the sub-problems of a step (PDE): named for what they are
    if "iterations" in ds and ds["iterations"].dims == (dim, "substep"):
        iters = np.asarray(ds["iterations"].values, dtype=np.float64)
        rec.series["iterations_total"] = series(np.where(iters >= 0, iters, 0).sum(axis=1))
    if "capped" in ds and ds["capped"].dims == (dim, "substep"):  # absent in stores from before it
        flags = np.asarray(ds["capped"].values)
        rec.series["capped"] = series((flags == 1).sum(axis=1))  # per step: sub-problems stopped at their cap
        rec.capped_substeps = int((flags[:n] == 1).sum())
    if "loss" in ds and ds["loss"].dims == (dim, "substep"):
        loss = np.asarray(ds["loss"].values, dtype=np.float64)
        with np.errstate(all="ignore"):
            worst = np.where(np.isfinite(loss).any(axis=1), np.nanmax(np.where(np.isfinite(loss), loss, -np.inf), axis=1), np.nan)
        rec.series["loss_max"] = series(worst)
    if rec.workload == "pde":
        rec.coord = np.asarray(ds["time"].values, dtype=np.float64) if "time" in ds.variables else None
        rec.n_params = int(ds["weights"].shape[1]) if "weights" in ds else 0
        metrics = [name for name in ("rel_l2", "max_err", "drift", "tip_error") if name in rec.series]
    else:
        rec.coord = np.asarray(ds["epoch"].values, dtype=np.float64) if "epoch" in ds.variables else None
        rec.n_params = int(attrs.get("n_params") or (ds["weights"].size if "weights" in ds else 0))
        rec.warning = str(attrs.get("warning") or "")
        clusters = attrs.get("validation_clusters")
        rec.validation_clusters = int(clusters) if isinstance(clusters, int | float) else None
        metrics = [name for name in ("mse", "mse_unobserved", "rmse") if name in rec.series]
    for name in metrics:
        done = rec.series[name][:n]
        finite = done[np.isfinite(done)]
        rec.final[name] = float(finite[-1]) if finite.size else float("nan")  # recon: last evaluated epoch
        rec.worst[name] = float(finite.max()) if finite.size else float("nan")
    if rec.workload == "pde" and n:
        rec.baselines = _baselines(ds, config, rec.n_params, n - 1)
    rec.iterations_total = int(np.nansum(rec.series.get("iterations_total", np.zeros(0))))
    seconds = rec.series["seconds"][:n]
    rec.seconds_total = float(np.nansum(seconds)) if n else float("nan")
    if rec.workload == "pde":  # step 0 is the initial fit, not a time step
        rec.fit_seconds = float(seconds[0]) if n else float("nan")
        rec.seconds_per_step = float(np.nanmean(seconds[1:])) if n > 1 else float("nan")
    else:
        rec.seconds_per_step = rec.seconds_total / n if n else float("nan")
    if rec.state == "done" and n < rec.steps_total:
        rec.state = "partial"  # run.json says done but the store disagrees: trust the store
    return rec


def _baselines(ds, config: dict, n_params: int, step: int) -> dict[str, float]:
    """The case's equal-memory classical errors at ``step`` (empty when it has none or the
    store lacks what it needs: a report never fails over a baseline)."""
    from insr_hpc.pde.cases import CASES

    try:
        problem = dict(config.get("problem") or {})
        cls = CASES.get(problem.get("case", ""))
        case = cls(cls.Params(**problem), float(config["time"]["dt"]))
        names = [v for v in ds.data_vars if v.endswith("_ref") and ds[v].dims and ds[v].dims[0] == "step"]
        reference = {v: np.asarray(ds[v].isel(step=step).values) for v in names}  # that step only
        return case.baseline_errors(n_params, step, reference) if reference else {}
    except Exception:  # noqa: BLE001 - an old or foreign store: no baseline column
        return {}

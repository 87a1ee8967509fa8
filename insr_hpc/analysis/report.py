"""``insr-hpc report DIR``: one sweep dataset, a summary table and figures for every run
under DIR, written to ``DIR/report/``.

* ``sweep.zarr``: every per-step (PDE) or per-epoch (reconstruction) scalar series
  stacked along a ``run`` dimension, NaN-padded to the longest run, with each swept key
  as a coordinate along ``run`` named with ``__`` for its dots (``time.dt`` →
  ``time__dt``, the dotted key in its attribute ``swept_key``:
  ``xr.open_zarr(path).load().rel_l2.sel(step=3).groupby("time__dt")``: small, loaded
  whole, since grouping by a dask-backed coordinate is refused), ``state``, ``reason`` and
  ``steps_done`` per run as coordinates, and per run ``capped_substeps``,
  ``seconds_per_step`` (after step 0), ``fit_seconds`` (step 0) and ``seconds_total``.
  Reductions over a step's sub-problems are named for what they are: ``loss_max``,
  ``iterations_total``, ``capped`` (how many stopped at their iteration cap). A series
  name that both PDE and reconstruction runs have (``seconds``) is the PDE one, the
  other gets ``_epoch``. Every variable has ``long_name`` and (quantities) ``units``;
  the dataset ``Conventions`` (CF) and netCDF-ready attributes (``to_netcdf`` works);
* ``summary.csv`` / ``summary.md``: one row per run, sorted by the primary error, with
  the case's classical solver at equal memory beside it where the case has one (Euler:
  ``grid_linear_rel_l2`` / ``grid_cubic_rel_l2``, the grid solver with N² cells × 3 ≈
  the run's weights, at the last committed step, against the same reference);
* ``*.png``: see :mod:`insr_hpc.analysis.figures`;
* ``tensorboard/``: one HParams session per run (:mod:`insr_hpc.analysis.tensorboard`).

Under ``mpiexec -n N`` or ``srun`` the run directories are dealt round robin to the
ranks, rank 0 gathers the records and writes everything: the output does not depend
on N.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from insr_hpc.analysis.stores import mpi_comm  # noqa: F401  (the CLI takes it from here)
from insr_hpc.analysis.collect import BadStore, RunRecord, collect_run
from insr_hpc.analysis.status import find_runs

REPORT_DIR = "report"


@dataclass
class Report:
    records: list[RunRecord]
    bad: list[str] = field(default_factory=list)  # "path: what is wrong", one per bad store
    outputs: list[str] = field(default_factory=list)


def run_dirs(root: str) -> list[str]:
    """Run directories under ``root`` (sorted), not looking inside a previous report."""
    return [d for d in find_runs(root) if os.path.relpath(d, root).split(os.sep)[0] != REPORT_DIR]


def collect(dirs: Sequence[str], root: str, progress: bool = False) -> tuple[list[RunRecord], list[str]]:
    """Records of ``dirs`` (in order) and one line per bad store."""
    from tqdm import tqdm

    records, bad = [], []
    for run_dir in tqdm(dirs, desc="stores", unit="store", disable=None if progress else True, leave=False):
        try:
            records.append(collect_run(run_dir, root))
        except BadStore as exc:
            bad.append(f"{os.path.join(run_dir, 'store.zarr')}: {exc}")
    return records, bad


# -- the sweep dataset ------------------------------------------------------------------
def swept_keys(records: Sequence[RunRecord]) -> list[str]:
    """Swept keys in first-seen order."""
    keys: list[str] = []
    for rec in records:
        keys += [k for k in rec.swept if k not in keys]
    return keys


def _coord_values(values: list[Any]) -> np.ndarray:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.array([bool(v) if v is not None else False for v in values])
    if present and len(present) == len(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return np.array(values, dtype=np.int64)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return np.array([float(v) if v is not None else np.nan for v in values])
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def coord_name(key: str) -> str:
    """The name of swept key ``key`` in sweep.zarr: dots become ``__`` (``time.dt`` →
    ``time__dt``), so ``ds.time__dt`` and ``groupby("time__dt")`` do not read as the
    ``time`` coordinate's ``.dt`` accessor; the dotted key is its attribute ``swept_key``."""
    return key.replace(".", "__")


# long_name / units of what the report derives (the rest comes from the stores' attributes)
DERIVED_ATTRS: dict[str, dict[str, str]] = {
    "run": {"long_name": "run directory relative to the sweep"},
    "state": {"long_name": "run state (done, partial, running, pending, failed, cancelled)"},
    "reason": {"long_name": "why the run failed or was cancelled (empty otherwise)"},
    "warning": {"long_name": "a warning that is not a failure, e.g. thin validation evidence (empty otherwise)"},
    "steps_done": {"long_name": "leading committed records (steps or epochs) of the run's store", "units": "1"},
    "step": {"long_name": "time step index", "units": "1"},
    "epoch": {"long_name": "training epoch (1-based)", "units": "1"},
    "time": {"standard_name": "time", "long_name": "time of the step (non-dimensional: step × time.dt)",
             "units": "1", "axis": "T"},
    "capped_substeps": {"long_name": "sub-problems over the committed steps whose optimiser stopped at its iteration "
                                     "cap (NaN: unknown: no store, not a PDE run, or a store from before the variable "
                                     "capped)", "units": "1"},
    "seconds_per_step": {"long_name": "mean wall time per committed step after step 0 (the initial fit); "
                                      "reconstruction: per committed epoch", "units": "s"},
    "fit_seconds": {"long_name": "wall time of step 0, the initial fit (NaN: not a PDE run or no committed step)",
                    "units": "s"},
    "seconds_total": {"long_name": "wall time of the committed records, the initial fit included", "units": "s"},
    "iterations_total": {"long_name": "optimiser iterations of the step, summed over its sub-problems", "units": "1"},
    "loss_max": {"long_name": "largest objective at the end of the step's sub-problems", "units": "1"},
    "capped": {"long_name": "sub-problems of the step whose optimiser stopped at its iteration cap", "units": "1"},
}


def _series_attrs(records: Sequence[RunRecord], name: str) -> dict[str, str]:
    """long_name / units of series ``name``: the report's own, else the stores' (units
    left out, with a comment, where the runs' stores disagree)."""
    if name in DERIVED_ATTRS:
        return dict(DERIVED_ATTRS[name])
    seen = [r.series_attrs[name] for r in records if name in r.series_attrs]
    attrs = dict(seen[0]) if seen else {"long_name": name}
    units = {a.get("units") for a in seen}
    if len(units) > 1:
        attrs.pop("units", None)
        attrs["comment"] = "units differ between the runs' stores: " + ", ".join(sorted(str(u) for u in units))
    return attrs


def sweep_dataset(records: Sequence[RunRecord]):
    """The records as one ``xarray.Dataset`` with dims (run, step) and/or (run, epoch)."""
    import xarray as xr

    from insr_hpc.store import CONVENTIONS, encode_attrs

    runs = [r.run for r in records]
    coords: dict[str, Any] = {"run": ("run", np.array(runs, dtype=object))}
    swept_attrs: dict[str, dict[str, str]] = {}
    for key in swept_keys(records):
        values = _coord_values([r.swept.get(key) for r in records])
        name = coord_name(key)
        coords[name] = ("run", values)
        swept_attrs[name] = {"long_name": f"swept config key {key}", "swept_key": key}
        if values.dtype.kind in "iufb":  # config values are non-dimensional numbers or counts
            swept_attrs[name]["units"] = "1"
    coords["state"] = ("run", np.array([r.state for r in records], dtype=object))
    coords["reason"] = ("run", np.array([r.reason for r in records], dtype=object))
    coords["warning"] = ("run", np.array([r.warning for r in records], dtype=object))
    coords["steps_done"] = ("run", np.array([r.steps_done for r in records], dtype=np.int64))
    data_vars: dict[str, Any] = {
        "capped_substeps": ("run", np.array([np.nan if r.capped_substeps is None else r.capped_substeps
                                             for r in records], dtype=np.float64)),
        "seconds_per_step": ("run", np.array([r.seconds_per_step for r in records], dtype=np.float64)),
        "fit_seconds": ("run", np.array([r.fit_seconds for r in records], dtype=np.float64)),
        "seconds_total": ("run", np.array([r.seconds_total for r in records], dtype=np.float64)),
    }
    renamed: dict[str, str] = {}
    for dim, coord_name_ in (("step", "time"), ("epoch", None)):
        group = [(i, r) for i, r in enumerate(records) if r.record_dim == dim]
        if not group:
            continue
        length = max((r.steps_total for _, r in group), default=0)
        names: list[str] = []
        for _, r in group:
            names += [n for n in r.series if n not in names]
        for name in names:
            arr = np.full((len(records), length), np.nan)
            for i, r in group:
                values = r.series.get(name)
                if values is not None:
                    arr[i, : values.size] = values
            var = name if name not in data_vars else f"{name}_{dim}"  # e.g. seconds of PDE steps and of epochs
            renamed[var] = name
            data_vars[var] = (("run", dim), arr)
        coords[dim] = (dim, np.arange(length) + (1 if dim == "epoch" else 0))
        if coord_name_:
            t = np.full((len(records), length), np.nan)
            for i, r in group:
                if r.coord is not None:
                    t[i, : r.coord.size] = r.coord
            coords[coord_name_] = (("run", dim), t)
    ds = xr.Dataset(data_vars, coords=coords)
    ds.attrs.update(encode_attrs({
        "title": "insr-hpc sweep report", "Conventions": CONVENTIONS,
        "swept_keys": swept_keys(records),  # the dotted keys, in sweep order (JSON text: json_attrs)
        "primary_error": {r.workload: r.primary for r in records},
    }))
    for name in ds.variables:
        name = str(name)
        if name in swept_attrs:
            ds[name].attrs.update(swept_attrs[name])
        elif name in renamed:
            attrs = _series_attrs(records, renamed[name])
            if renamed[name] != name:
                attrs["long_name"] = f"{attrs.get('long_name', renamed[name])} (per {ds[name].dims[1]})"
            ds[name].attrs.update(attrs)
        elif name in DERIVED_ATTRS:
            ds[name].attrs.update(DERIVED_ATTRS[name])
    return ds


# -- the summary table ------------------------------------------------------------------
def _metric_names(records: Sequence[RunRecord]) -> list[str]:
    names: list[str] = []
    for r in records:
        names += [n for n in r.final if n not in names]
    return names


def summary_rows(records: Sequence[RunRecord]) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and one row per run, sorted by the primary error (NaN last), then run."""
    keys = swept_keys(records)
    metrics = _metric_names(records)
    header = ["run", *keys, "state", "steps_done", "steps_total"]
    header += [f"final_{m}" for m in metrics] + [f"worst_{m}" for m in metrics]
    baselines: list[str] = []
    for r in records:
        baselines += [b for b in r.baselines if b not in baselines]
    header += baselines
    header += ["seconds_total", "fit_seconds", "seconds_per_step", "iterations_total", "capped_substeps", "n_params",
               "reason"]
    if any(r.warning for r in records):  # thin validation evidence: marked, not failed
        header.append("warning")

    def sort_key(r: RunRecord):
        value = r.final.get(r.primary, math.nan)
        return (math.isnan(value), value if not math.isnan(value) else 0.0, r.run)

    rows = []
    for r in sorted(records, key=sort_key):
        row: dict[str, Any] = {"run": r.run, **{k: r.swept.get(k, "") for k in keys}}
        row.update(state=r.state, steps_done=r.steps_done, steps_total=r.steps_total)
        row.update({f"final_{m}": r.final.get(m, math.nan) for m in metrics})
        row.update({f"worst_{m}": r.worst.get(m, math.nan) for m in metrics})
        row.update({b: r.baselines.get(b, math.nan) for b in baselines})
        row.update(seconds_total=r.seconds_total, fit_seconds=r.fit_seconds, seconds_per_step=r.seconds_per_step,
                   iterations_total=r.iterations_total,
                   capped_substeps=math.nan if r.capped_substeps is None else r.capped_substeps,  # empty: unknown
                   n_params=r.n_params, reason=r.reason)
        if "warning" in header:
            row["warning"] = f"⚠ {r.warning}" if r.warning else ""
        rows.append(row)
    return header, rows


def _csv_cell(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def summary_csv(header: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_csv_cell(row[h]) for h in header])
    return buf.getvalue()


def summary_markdown(header: list[str], rows: list[dict[str, Any]], title: str) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = [f"# {title}", "", f"{len(rows)} run(s), sorted by the primary error (best first).", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row[h]) for h in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- writing ------------------------------------------------------------------------------
def _atomic_text(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_report(root: str, records: list[RunRecord], bad: list[str], figures: bool = True) -> Report:
    """Write ``root/report/``: sweep.zarr, summary.csv, summary.md and the figures."""
    out = os.path.join(root, REPORT_DIR)
    os.makedirs(out, exist_ok=True)
    report = Report(records, bad)
    ds = sweep_dataset(records)
    target = os.path.join(out, "sweep.zarr")
    tmp = target + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    header, rows = summary_rows(records)
    _atomic_text(os.path.join(out, "summary.csv"), summary_csv(header, rows))
    title = f"Sweep report: {os.path.basename(os.path.abspath(root))}"
    md = summary_markdown(header, rows, title)
    if bad:
        md += "\n## Stores left out\n\n" + "\n".join(f"- {line}" for line in bad) + "\n"
    _atomic_text(os.path.join(out, "summary.md"), md)
    report.outputs = [target, os.path.join(out, "summary.csv"), os.path.join(out, "summary.md")]
    from insr_hpc.analysis.tensorboard import write_hparams

    report.outputs.append(write_hparams(os.path.join(out, "tensorboard"), records))
    if figures:
        from insr_hpc.analysis import figures as figs

        report.outputs += figs.write_figures(root, out, ds, records)
    return report


# -- parallel driver ----------------------------------------------------------------------
def build_report(
    root: str, figures: bool = True, progress: bool = False, comm=None, on_bad: Callable[[str], None] | None = None
) -> Report | None:
    """Collect every run under ``root`` (this rank's share) and, on rank 0, write the
    report. Returns the Report on rank 0, None on other ranks."""
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    dirs = run_dirs(root)  # every rank walks the same tree: nothing to scatter
    mine = list(enumerate(dirs))[rank::size]
    records, bad = collect([d for _, d in mine], root, progress=progress and rank == 0)
    by_dir = {r.run: r for r in records}
    part = [(i, by_dir.get(os.path.relpath(d, root))) for i, d in mine]
    if comm is not None and size > 1:
        gathered = comm.gather((part, bad), root=0)
        if rank != 0:
            return None
        part = [p for g in gathered for p in g[0]]
        bad = [b for g in gathered for b in g[1]]
    ordered = [rec for _, rec in sorted(part, key=lambda p: p[0]) if rec is not None]
    bad = sorted(bad)
    if on_bad:
        for line in bad:
            on_bad(line)
    return write_report(root, ordered, bad, figures=figures)

"""Observed convergence order over a Δt or width sweep: final error vs the swept value.

    python jobs/convergence_order.py runs/advection_dt --key time.dt [--group network.width]
    mpiexec -n 4 python jobs/convergence_order.py runs/advection_dt --key time.dt

Reads every store under ROOT (its resolved config is ``attrs["config"]``), takes the
value of KEY (a dotted config key) and the final error (``--error``, default rel_l2, at
the last committed step), and fits log(error) = p · log(value) + c per group of runs
that share the ``--group`` keys. p is the observed order (error ∝ Δt^p; for a width
sweep, a negative p says how fast the error falls with width). A fit needs at least
MIN_FIT_POINTS (3) distinct values of KEY in a group: with exactly two, the slope
between them is printed and written as ``two_point_slope`` (labelled as such, order
left empty: two points cannot show whether the error is in its asymptotic regime);
with one, no slope. Writes OUT/convergence.csv (group, runs, values, order,
two_point_slope, note) and OUT/convergence.png and prints the slopes.
Stores are dealt round robin to MPI ranks; rank 0 fits and writes. Only xarray and numpy.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import xarray as xr

from insr_hpc.analysis.stores import map_stores
from insr_hpc.store import decode_attrs


def config_value(config: dict, key: str):
    node = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def read(path: str, key: str, group: list[str], error: str) -> dict | None:
    ds = xr.open_zarr(path)
    done = ds.committed.values.astype(bool)
    n = int(np.argmin(done)) if not done.all() else done.size
    config = decode_attrs(ds.attrs).get("config", {})  # nested attributes are JSON text (netCDF-ready)
    value = config_value(config, key)
    if n == 0 or error not in ds or value is None:
        return None
    return {"store": path, "value": float(value), "error": float(ds[error].values[n - 1]),
            "group": tuple(str(config_value(config, g)) for g in group)}


MIN_FIT_POINTS = 3


def fit_order(values: np.ndarray, errors: np.ndarray) -> float:
    """Least-squares slope of log(error) against log(value)."""
    slope, _ = np.polyfit(np.log(values), np.log(errors), 1)
    return float(slope)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--key", required=True, help="the swept config key, e.g. time.dt or network.width")
    ap.add_argument("--group", action="append", default=[], help="fit separately per value of this key (repeatable)")
    ap.add_argument("--error", default="rel_l2", help="per-step error array (default rel_l2)")
    ap.add_argument("--out", default=None, help="output directory (default: ROOT/report)")
    args = ap.parse_args(argv)
    found, size, n_stores = map_stores(args.root, lambda p: read(p, args.key, args.group, args.error))
    if not n_stores:
        if found is not None:
            print(f"convergence_order: error: no store.zarr under '{args.root}'", file=sys.stderr)
        return 2
    if found is None:  # not rank 0
        return 0
    points = [r for r in found if r and r["error"] > 0]
    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault(p["group"], []).append(p)
    out = args.out or os.path.join(args.root, "report")
    os.makedirs(out, exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    rows = []
    for g, pts in sorted(groups.items()):
        pts.sort(key=lambda p: p["value"])
        v, e = np.array([p["value"] for p in pts]), np.array([p["error"] for p in pts])
        distinct = len(set(v))
        label = ", ".join(f"{k}={x}" for k, x in zip(args.group, g, strict=True)) or "all runs"
        order = slope = float("nan")
        if distinct >= MIN_FIT_POINTS:
            order = fit_order(v, e)
            note = f"least-squares fit over {distinct} values"
            print(f"{label}: {len(pts)} run(s), observed order p = {order:.3f} ({note})")
            legend = f"{label}: p = {order:.2f} (fit, {distinct} values)"
        elif distinct == 2:
            slope = fit_order(v, e)
            note = f"no fit: 2 values of {args.key} (a fit needs {MIN_FIT_POINTS}); two-point slope only"
            print(f"{label}: {len(pts)} run(s), two-point slope = {slope:.3f} (not an observed order: {note})")
            legend = f"{label}: two-point slope {slope:.2f} (no fit: 2 values)"
        else:
            note = f"no slope: 1 value of {args.key} (a fit needs {MIN_FIT_POINTS})"
            print(f"{label}: {len(pts)} run(s), {note}")
            legend = f"{label}: no slope (1 value)"
        rows.append([label, len(pts), distinct, "" if np.isnan(order) else repr(order),
                     "" if np.isnan(slope) else repr(slope), note])
        # the runs as points (a group's runs at one value differ in keys outside the group:
        # joining them by a line would draw a path through unrelated runs) and the
        # least-squares line through them (the fit, or the two-point slope)
        (dots,) = ax.loglog(v, e, "o", alpha=0.75, label=legend)
        p = order if np.isfinite(order) else slope
        if np.isfinite(p):
            xs = np.unique(v)
            c = float(np.mean(np.log(e)) - p * np.mean(np.log(v)))
            ax.loglog(xs, np.exp(c) * xs**p, ":" if np.isfinite(order) else "--", color=dots.get_color())
    title = (f"convergence: final {args.error} vs {args.key}, one point per run\n(dotted: least-squares fit, "
             f"needs ≥ {MIN_FIT_POINTS} values; dashed: two-point slope)")
    if any(not r[3] for r in rows):
        title += f"\nfewer than {MIN_FIT_POINTS} values of {args.key} in a group:\nno order fitted there (see legend)"
    ax.set(xlabel=args.key, ylabel=f"final {args.error}", title=title)
    ax.title.set_fontsize(10)
    ax.grid(alpha=0.3, which="both")
    # below the axes: group labels are long and would cover the data inside them
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1, frameon=False)
    fig.savefig(os.path.join(out, "convergence.png"), dpi=110, bbox_inches="tight")
    with open(os.path.join(out, "convergence.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["group", "runs", "values", "order", "two_point_slope", "note"])
        w.writerows(rows)
    return 0 if points else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The report's figures (PNG): error histories, a final-error heatmap over two swept keys,
and per-case snapshots of the best and the worst run.

Every function takes plain data (the sweep Dataset, RunRecords, store Datasets) and
returns a matplotlib Figure; :func:`write_figures` saves them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from insr_hpc.analysis.collect import RunRecord
from insr_hpc.grid import vorticity  # noqa: F401  (also imported from here)
from insr_hpc.rundir import RunDir
from insr_hpc.store import StepStore

ERROR_LABEL = {
    "rel_l2": "relative L2 error ‖u − u_ref‖₂ / ‖u_ref‖₂",
    "mse": "MSE over the grid (normalised to [0, 1])",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colour_key(records: Sequence[RunRecord]) -> str | None:
    """The swept key with the most distinct values (first in sweep order on a tie)."""
    best, count = None, 1
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.swept if k not in keys]
    for key in keys:
        n = len({str(r.swept.get(key)) for r in records})
        if n > count:
            best, count = key, n
    return best


def _short(value: Any, width: int = 28) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def error_history(ds, records: Sequence[RunRecord]):
    """One axis per workload: the primary error of every run over time (or epoch)."""
    plt = _plt()
    workloads = [w for w in ("pde", "recon") if any(r.workload == w for r in records)]
    fig, axes = plt.subplots(1, len(workloads), figsize=(7.5 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        group = [r for r in records if r.workload == workload and r.steps_done]
        metric = "rel_l2" if workload == "pde" else "mse"
        key = colour_key(group)
        values = sorted({str(r.swept.get(key)) for r in group}) if key else []
        cmap = plt.get_cmap("viridis" if len(values) > 10 else "tab10")
        colours = {v: cmap(i / max(1, len(values) - 1) if len(values) > 10 else i) for i, v in enumerate(values)}
        labelled: set[str] = set()
        for r in group:
            y = r.series.get(metric)
            if y is None:
                continue
            x = r.coord if r.coord is not None else np.arange(y.size)
            ok = np.isfinite(y)
            v = str(r.swept.get(key)) if key else ""
            label = f"{key} = {_short(r.swept.get(key))}" if key and v not in labelled else None
            labelled.add(v)
            style = dict(marker="o", ms=3) if ok.sum() < 0.5 * max(1, r.steps_done) or ok.sum() <= 3 else {}
            ax.plot(x[ok], y[ok], color=colours.get(v, "C0"), lw=1.2, alpha=0.8, label=label, **style)
        if workload == "pde":
            ax.set(xlabel="time t (simulation units)", title=f"{metric} vs time, {len(group)} run(s)")
        else:
            ax.set(xlabel="training epoch", title=f"{metric} vs epoch (evaluated epochs), {len(group)} run(s)")
        ax.set_ylabel(ERROR_LABEL.get(metric, metric))
        if any(np.nanmin(r.series.get(metric, np.array([np.nan]))) > 0 for r in group if r.steps_done):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        if key:
            ax.legend(title="colour", fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def heatmap_keys(records: Sequence[RunRecord]) -> tuple[str, str] | None:
    """The two swept keys with the most distinct values (at least two each)."""
    keys: list[str] = []
    for r in records:
        keys += [k for k in r.swept if k not in keys]
    counted = [(len({str(r.swept.get(k)) for r in records}), -i, k) for i, k in enumerate(keys)]
    counted = sorted((c for c in counted if c[0] >= 2), reverse=True)
    return (counted[0][2], counted[1][2]) if len(counted) >= 2 else None


def _sorted_values(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def final_error_heatmap(records: Sequence[RunRecord]):
    """Final primary error over the two swept keys with most values; the best run over
    any other swept keys in each cell. None when fewer than two keys vary."""
    keys = heatmap_keys(records)
    if keys is None:
        return None
    plt = _plt()
    kx, ky = keys
    xs = _sorted_values({r.swept.get(kx) for r in records})
    ys = _sorted_values({r.swept.get(ky) for r in records})
    grid = np.full((len(ys), len(xs)), np.nan)
    for r in records:
        value = r.final.get(r.primary, np.nan)
        i, j = ys.index(r.swept.get(ky)), xs.index(r.swept.get(kx))
        if np.isfinite(value) and not (value >= grid[i, j]):
            grid[i, j] = value
    metric = records[0].primary
    from matplotlib.colors import LogNorm, Normalize

    fig, ax = plt.subplots(figsize=(1.6 * len(xs) + 3.5, 0.8 * len(ys) + 2.5))
    finite = grid[np.isfinite(grid)]
    log = finite.size and finite.min() > 0 and finite.max() > finite.min()
    norm = LogNorm(finite.min(), finite.max()) if log else Normalize()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis_r", norm=norm, aspect="auto", origin="lower")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if np.isnan(grid[i, j]):
                ax.text(j, i, "no run", ha="center", va="center", fontsize=9, color="k")
                continue
            r, g, b, _ = im.cmap(im.norm(grid[i, j]))
            ink = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
            ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=10, color=ink)
    ax.set_xticks(range(len(xs)), [_short(v, 18) for v in xs], rotation=20 if len(xs) > 4 else 0)
    ax.set_yticks(range(len(ys)), [_short(v, 18) for v in ys])
    ax.set(xlabel=kx, ylabel=ky)
    others = [k for k in {k for r in records for k in r.swept} if k not in keys]
    ax.set_title(f"final {metric} per ({kx}, {ky})" + ("\nbest run over " + ", ".join(sorted(others)) if others else ""), fontsize=10)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label(f"final {metric}" + (" (log scale)" if log else ""))
    fig.tight_layout()
    return fig


# -- per-case snapshots -------------------------------------------------------------------
def best_and_worst(records: Sequence[RunRecord]) -> list[tuple[str, RunRecord]]:
    ranked = [r for r in records if r.steps_done and np.isfinite(r.final.get(r.primary, np.nan))]
    if not ranked:
        return []
    ranked.sort(key=lambda r: (r.final[r.primary], r.run))
    return [("best", ranked[0])] + ([("worst", ranked[-1])] if len(ranked) > 1 else [])


def _title(tag: str, r: RunRecord, width: int = 46) -> str:
    lines = [""]
    for part in r.run.replace("_", "_\0").split("\0"):  # break after the swept values' separators
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    name = "\n".join(lines)
    return f"{tag} run, final {r.primary} = {r.final[r.primary]:.3g}\n{name}"


def _advection(pairs, stores):
    plt = _plt()
    fig, axes = plt.subplots(1, len(pairs), figsize=(6.5 * len(pairs), 4), squeeze=False)
    for ax, (tag, r), ds in zip(axes[0], pairs, stores, strict=True):
        k = r.steps_done - 1
        x = ds["x"].values
        ax.plot(x, ds["field_exact"].values[k], "k--", lw=1.2, label="exact u₀(x − a t)")
        ax.plot(x, ds["field"].values[k], lw=1.4, label="INSR")
        ax.set(xlabel="x", ylabel="u (1)", title=_title(tag, r) + f"\nlast committed step, t = {float(ds['time'].values[k]):.3g}")
        ax.title.set_fontsize(9)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _euler(pairs, stores):
    plt = _plt()
    fig, axes = plt.subplots(1, len(pairs) + 1, figsize=(4.6 * (len(pairs) + 1), 4.2))
    for ax, (tag, r), ds in zip(axes[:-1], pairs, stores, strict=True):
        k = r.steps_done - 1
        x, y = ds["x"].values, ds["y"].values
        w = vorticity(np.asarray(ds["u"].values[k], dtype=np.float64), x, y)
        lim = float(np.abs(w).max()) or 1.0
        im = ax.imshow(w, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set(xlabel="x", ylabel="y", title=_title(tag, r) + f"\nvorticity at t = {float(ds['time'].values[k]):.3g}")
        ax.title.set_fontsize(8)
        fig.colorbar(im, ax=ax, shrink=0.8, label="ω = ∂v/∂x − ∂u/∂y (1/time)")
    ax = axes[-1]
    for k, ((tag, r), ds) in enumerate(zip(pairs, stores, strict=True)):
        n = r.steps_done
        t = ds["time"].values[:n]
        ax.plot(t, ds["kinetic_energy"].values[:n], "o-", color=f"C{k}", ms=3, label=f"{tag} run (INSR)")
        if "kinetic_energy_ref" in ds:
            ax.plot(t, ds["kinetic_energy_ref"].values[:n], "--", color=f"C{k}", label=f"{tag} run's reference (grid solver)")
    ax.set(xlabel="time t", ylabel="kinetic energy ½∫|u|² dx (1)", title="kinetic energy history")
    ax.legend(fontsize=7, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _reference_positions(ds) -> np.ndarray | None:
    text = ds["points"].attrs.get("reference_positions", "")
    try:
        pts = [tuple(float(v) for v in p.strip(" ()").split(",")) for p in text.split("), (")]
        return np.array(pts)
    except ValueError:
        return None


def _elasticity(pairs, stores):
    plt = _plt()
    fig, axes = plt.subplots(len(pairs), 1, figsize=(7, 3.2 * len(pairs)), squeeze=False)
    for ax, (tag, r), ds in zip(axes[:, 0], pairs, stores, strict=True):
        k = r.steps_done - 1
        rest = _reference_positions(ds)
        if rest is not None:
            ax.plot(*rest.T, "s", color="0.75", ms=5, label="reference configuration")
        ax.plot(*np.asarray(ds["points_ref"].values[k]).T, "kx", label="FEM reference")
        ax.plot(*np.asarray(ds["points"].values[k]).T, "o", mfc="none", color="C3", label="INSR deformed")
        ax.set(aspect="equal", xlabel="x (length units)", ylabel="y (length units)",
               title=_title(tag, r) + f", t = {float(ds['time'].values[k]):.3g}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _recon(pairs, stores):
    plt = _plt()
    fig, axes = plt.subplots(len(pairs), 3, figsize=(14, 3.7 * len(pairs)), squeeze=False)
    for row, (tag, r), ds in zip(axes, pairs, stores, strict=True):
        truth = np.asarray(ds["target"].values[0], dtype=np.float64)
        rec = np.asarray(ds["reconstruction"].values[0], dtype=np.float64)
        land = ~np.isfinite(truth)
        err = rec - truth
        lon, lat = ds["longitude"].values, ds["latitude"].values
        extent = (lon.min(), lon.max(), lat.min(), lat.max())
        units = ds["target"].attrs.get("units", "")
        lo, hi = np.nanmin(truth), np.nanmax(truth)
        lim = float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else 1.0
        for ax, img, what, kw in (
            (row[0], truth, "true", dict(cmap="viridis", vmin=lo, vmax=hi)),
            (row[1], rec, "reconstructed", dict(cmap="viridis", vmin=lo, vmax=hi)),
            (row[2], err, "error (reconstructed − true)", dict(cmap="RdBu_r", vmin=-lim, vmax=lim)),
        ):
            cmap = plt.get_cmap(kw.pop("cmap")).with_extremes(bad="0.6")  # land / no data in grey
            im = ax.imshow(np.ma.masked_where(land, img), origin="lower", extent=extent, aspect="auto", cmap=cmap, **kw)
            ax.set(xlabel="longitude (°E)", ylabel="latitude (°N)", title=f"{tag} ({r.run}): {what}, time index 0")
            ax.title.set_fontsize(8)
            fig.colorbar(im, ax=ax, label=units)
    fig.suptitle("grey: land / no data", fontsize=8, x=0.99, ha="right")
    fig.tight_layout()
    return fig


SNAPSHOTS = {"advection": _advection, "euler": _euler, "elasticity": _elasticity}


def snapshot(case: str, workload: str, records: Sequence[RunRecord], root: str):
    """Best and worst run of one case (or reconstruction variable), or None."""
    draw = _recon if workload == "recon" else SNAPSHOTS.get(case)
    pairs = best_and_worst(records)
    if draw is None or not pairs:
        return None
    stores = [StepStore.dataset(RunDir(os.path.join(root, r.run)).store) for _, r in pairs]
    return draw(pairs, stores)


def write_figures(root: str, out: str, ds, records: Sequence[RunRecord]) -> list[str]:
    """Save every figure that applies under ``out``; returns their paths."""
    plt = _plt()
    figures: list[tuple[str, Any]] = []
    if any(r.steps_done for r in records):
        figures.append(("error_history.png", error_history(ds, records)))
    by_workload: dict[str, list[RunRecord]] = {}
    for r in records:
        by_workload.setdefault(r.workload, []).append(r)
    for workload, group in sorted(by_workload.items()):
        heat = final_error_heatmap(group)
        if heat is not None:
            figures.append((f"final_error_heatmap_{workload}.png", heat))
    by_case: dict[tuple[str, str], list[RunRecord]] = {}
    for r in records:
        by_case.setdefault((r.workload, r.case), []).append(r)
    for (workload, case), group in sorted(by_case.items()):
        fig = snapshot(case, workload, group, root)
        if fig is not None:
            name = case if workload == "pde" else f"recon_{case}"
            figures.append((f"snapshots_{name}.png", fig))
    paths = []
    for name, fig in figures:
        path = os.path.join(out, name)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths

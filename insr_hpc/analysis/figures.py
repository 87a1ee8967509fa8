"""The report's figures (PNG): error histories, a final-error heatmap over two swept keys,
and per-case snapshots of the best and the worst run.

Every function takes plain data (the sweep Dataset, RunRecords, store Datasets) and
returns a matplotlib Figure; :func:`write_figures` saves them.

What they hold to: error histories are coloured by the swept key that explains most of
the variance of log10(final error) (:func:`colour_key`, named with its share in the
title and as the legend's title); the snapshots show the best and the worst run at one
shared time, each as prediction, reference and error with the same colour (or y)
limits for prediction and reference and one error scale for both runs; runs with a
sub-problem stopped at its iteration cap (``RunRecord.capped_substeps``) are dashed in the
histories, hatched in the heatmap and named in the snapshots' titles, with a legend
entry "stopped at iteration cap".
"""

from __future__ import annotations

import json

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


def _final_log_errors(records: Sequence[RunRecord]) -> list[tuple[RunRecord, float]]:
    out = []
    for r in records:
        value = r.final.get(r.primary, np.nan)
        if r.steps_done and np.isfinite(value) and value > 0:
            out.append((r, float(np.log10(value))))
    return out


def variance_shares(records: Sequence[RunRecord]) -> dict[str, float]:
    """Per swept key with at least two values: the share of the variance of log10(final
    primary error) between that key's groups (one-way ANOVA η² = SS_between / SS_total,
    0 when every run has the same error). Runs without a finite positive final error
    are left out."""
    scored = _final_log_errors(records)
    keys: list[str] = []
    for r, _ in scored:
        keys += [k for k in r.swept if k not in keys]
    if len(scored) < 2:
        return {}
    y = np.array([v for _, v in scored])
    total = float(((y - y.mean()) ** 2).sum())
    shares: dict[str, float] = {}
    for key in keys:
        groups: dict[str, list[float]] = {}
        for r, v in scored:
            groups.setdefault(str(r.swept.get(key)), []).append(v)
        if len(groups) < 2:
            continue
        between = sum(len(g) * (np.mean(g) - y.mean()) ** 2 for g in groups.values())
        shares[key] = float(between / total) if total > 0 else 0.0
    return shares


def colour_key(records: Sequence[RunRecord]) -> tuple[str, float] | None:
    """The swept key that explains most of the variance of log10(final error) and its
    share (first in sweep order on a tie); None with fewer than two scored runs or no
    key that varies among them."""
    shares = variance_shares(records)
    if not shares:
        return None
    key = max(shares, key=lambda k: (shares[k], -list(shares).index(k)))
    return key, shares[key]


def is_capped(r: RunRecord) -> bool:
    """Whether some sub-problem of the run stopped at its iteration cap (unknown: no)."""
    return bool(r.capped_substeps)


CAP_LABEL = "stopped at iteration cap"


def _short(value: Any, width: int = 28) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def error_history(ds, records: Sequence[RunRecord]):
    """One axis per workload: the primary error of every run over time (or epoch).

    Lines are coloured by the swept key that explains most of the variance of the
    log10 final error (:func:`colour_key`; the title gives the key and its share);
    runs with a sub-problem stopped at its iteration cap are dashed."""
    from matplotlib.lines import Line2D

    plt = _plt()
    workloads = [w for w in ("pde", "recon") if any(r.workload == w for r in records)]
    fig, axes = plt.subplots(1, len(workloads), figsize=(7.5 * len(workloads), 4.8), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        group = [r for r in records if r.workload == workload and r.steps_done]
        metric = "rel_l2" if workload == "pde" else "mse"
        chosen = colour_key(group) if len(group) > 1 else None
        key = chosen[0] if chosen else None
        values = _sorted_values({r.swept.get(key) for r in group}) if key else []
        names = [str(v) for v in values]
        cmap = plt.get_cmap("viridis" if len(values) > 10 else "tab10")
        colours = {v: cmap(i / max(1, len(values) - 1) if len(values) > 10 else i) for i, v in enumerate(names)}
        handles: list[Any] = []
        for i, r in enumerate(group):
            y = r.series.get(metric)
            if y is None:
                continue
            x = r.coord if r.coord is not None else np.arange(y.size)
            ok = np.isfinite(y)
            colour = colours.get(str(r.swept.get(key)), "C0") if key else f"C{i % 10}"
            label = None if key else _short(r.run, 40)
            style = dict(marker="o", ms=3) if ok.sum() < 0.5 * max(1, r.steps_done) or ok.sum() <= 3 else {}
            ax.plot(x[ok], y[ok], color=colour, lw=1.2, alpha=0.8, ls="--" if is_capped(r) else "-",
                    label=label, **style)
        if workload == "pde":
            title = f"{metric} vs time, {len(group)} run(s)"
            ax.set(xlabel="time t (simulation units)")
        else:
            title = f"{metric} vs epoch (evaluated epochs), {len(group)} run(s)"
            ax.set(xlabel="training epoch")
        if chosen:
            title += f"\ncolour: {key}, {chosen[1]:.0%} of the variance of log10(final {metric})"
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ERROR_LABEL.get(metric, metric))
        if any(np.nanmin(r.series.get(metric, np.array([np.nan]))) > 0 for r in group if r.steps_done):
            ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        capped = any(is_capped(r) for r in group)
        if key:
            handles = [Line2D([], [], color=colours[n], lw=1.5, label=_short(v)) for v, n in zip(values, names, strict=True)]
            if capped:
                handles.append(Line2D([], [], color="0.3", ls="--", lw=1.2, label=CAP_LABEL))
            ax.legend(handles=handles, title=key, fontsize=8, title_fontsize=8, loc="best")
        elif group:
            handles, _ = ax.get_legend_handles_labels()
            if capped:
                handles.append(Line2D([], [], color="0.3", ls="--", lw=1.2, label=CAP_LABEL))
            ax.legend(handles=handles, fontsize=8, loc="best")
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
    capped = np.zeros(grid.shape, dtype=bool)  # the cell's (best) run stopped at its iteration cap
    for r in records:
        value = r.final.get(r.primary, np.nan)
        i, j = ys.index(r.swept.get(ky)), xs.index(r.swept.get(kx))
        if np.isfinite(value) and not (value >= grid[i, j]):
            grid[i, j] = value
            capped[i, j] = is_capped(r)
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
    if capped.any():
        from matplotlib.patches import Patch, Rectangle

        for i, j in zip(*np.nonzero(capped), strict=True):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.35", lw=0))
        ax.legend(handles=[Patch(facecolor="none", edgecolor="0.35", hatch="///", label=CAP_LABEL)],
                  loc="upper left", bbox_to_anchor=(0, -0.12 if len(xs) <= 4 else -0.2), fontsize=8, frameon=False)
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


def _unit(attrs) -> str:
    units = str(attrs.get("units", "") or "")
    return "dimensionless" if units in ("", "1") else units


def _run_title(tag: str, r: RunRecord, width: int = 46) -> str:
    lines = [""]
    for part in r.run.replace("_", "_\0").split("\0"):  # break after the swept values' separators
        if lines[-1] and len(lines[-1]) + len(part) > width:
            lines.append("")
        lines[-1] += part
    name = "\n".join(lines)
    cap = f"  [{CAP_LABEL}: {r.capped_substeps} sub-problem(s)]" if is_capped(r) else ""
    return f"{tag} run, final {r.primary} = {r.final[r.primary]:.3g}{cap}\n{name}"


def common_steps(pairs, stores) -> tuple[list[int], str]:
    """One committed step per run showing the same time: the latest time every run has
    committed (runs with different Δt share fewer times), else the last step they all
    committed. Returns the steps and a caption."""
    n = [r.steps_done for _, r in pairs]
    times = [np.asarray(ds["time"].values[:k], dtype=np.float64) if "time" in ds.variables else None
             for ds, k in zip(stores, n, strict=True)]
    if all(t is not None for t in times):
        shared = [t for t in times[0][::-1] if all(np.isclose(other, t, rtol=1e-9, atol=1e-12).any() for other in times[1:])]
        if shared:
            t = shared[0]
            steps = [int(np.argmin(np.abs(ts - t))) for ts in times]
            return steps, f"t = {t:.4g}"
    k = min(n) - 1
    caption = f"step {k}" + (f", t = {float(times[0][k]):.4g}" if times[0] is not None and len(stores) == 1 else "")
    return [k] * len(pairs), caption


def _who(pairs, when: str = "") -> str:
    if len(pairs) > 1:
        return "best and worst run at the same time" + (f" ({when})" if when else "")
    return "the only run with a final error" + (f", at {when}" if when else "")


def _label_row(ax, tag: str, r: RunRecord) -> None:
    ax.annotate(_run_title(tag, r), xy=(0, 1), xycoords="axes fraction", xytext=(0, 28), textcoords="offset points",
                fontsize=8, va="bottom", ha="left", annotation_clip=False)


def _advection(pairs, stores):
    plt = _plt()
    steps, when = common_steps(pairs, stores)
    fig, axes = plt.subplots(len(pairs), 3, figsize=(15, 3.9 * len(pairs)), squeeze=False)
    pred = [np.asarray(ds["field"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
    ref = [np.asarray(ds["field_exact"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
    both = np.concatenate(pred + ref)
    lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
    pad = 0.05 * (hi - lo or 1.0)
    err_lim = max(float(np.nanmax(np.abs(p - q))) for p, q in zip(pred, ref, strict=True)) * 1.05 or 1.0
    for row, (tag, r), ds, k, p, q in zip(axes, pairs, stores, steps, pred, ref, strict=True):
        x = ds["x"].values
        unit, xunit = _unit(ds["field"].attrs), _unit(ds["x"].attrs)
        t = f"t = {float(ds['time'].values[k]):.4g} (step {k})"
        for ax, y, what, colour in ((row[0], p, "prediction (INSR)", "C0"), (row[1], q, "reference: exact u₀(x − a t)", "k"),
                                    (row[2], p - q, "error: prediction − reference", "C3")):
            ax.plot(x, y, color=colour, lw=1.4, ls="--" if is_capped(r) and ax is row[0] else "-")
            ax.set(xlabel=f"x ({xunit})", title=f"{tag}: {what}\n{t}")
            ax.title.set_fontsize(9)
            ax.grid(alpha=0.3)
        row[0].set(ylabel=f"u ({unit})", ylim=(lo - pad, hi + pad))
        row[1].set(ylabel=f"u ({unit})", ylim=(lo - pad, hi + pad))
        row[2].set(ylabel=f"u − u_ref ({unit})", ylim=(-err_lim, err_lim))
        row[2].axhline(0, color="0.5", lw=0.8)
        _label_row(row[0], tag, r)
    fig.suptitle(f"{_who(pairs, when)}; same y-limits for prediction and reference; "
                 "one error scale for both runs", fontsize=10)
    fig.tight_layout(h_pad=4.5)  # room for the row's run title
    return fig


def _image(fig, ax, img, extent, cbar_label, **kw):
    im = ax.imshow(img, origin="lower", extent=extent, **kw)
    fig.colorbar(im, ax=ax, shrink=0.85, label=cbar_label)
    return im


def _euler(pairs, stores):
    plt = _plt()
    steps, when = common_steps(pairs, stores)
    fig, axes = plt.subplots(len(pairs), 4, figsize=(21, 4.6 * len(pairs)), squeeze=False)
    w_pred, w_ref = [], []
    for ds, k in zip(stores, steps, strict=True):
        x, y = ds["x"].values, ds["y"].values
        w_pred.append(vorticity(np.asarray(ds["u"].values[k], dtype=np.float64), x, y))
        w_ref.append(vorticity(np.asarray(ds["u_ref"].values[k], dtype=np.float64), x, y) if "u_ref" in ds else None)
    lim = max(float(np.abs(w).max()) for w in w_pred + [w for w in w_ref if w is not None]) or 1.0
    errs = [p - q for p, q in zip(w_pred, w_ref, strict=True) if q is not None]
    elim = max((float(np.abs(e).max()) for e in errs), default=0.0) or 1.0
    for row, (tag, r), ds, k, wp, wr in zip(axes, pairs, stores, steps, w_pred, w_ref, strict=True):
        x, y = ds["x"].values, ds["y"].values
        extent = (x[0], x[-1], y[0], y[-1])
        xu = _unit(ds["x"].attrs)
        t = f"t = {float(ds['time'].values[k]):.4g} (step {k})"
        label = "ω = ∂v/∂x − ∂u/∂y (1/time)"
        _image(fig, row[0], wp, extent, label, cmap="RdBu_r", vmin=-lim, vmax=lim)
        row[0].set_title(f"{tag}: prediction (INSR) vorticity\n{t}", fontsize=9)
        if wr is not None:
            _image(fig, row[1], wr, extent, label, cmap="RdBu_r", vmin=-lim, vmax=lim)
            _image(fig, row[2], wp - wr, extent, "ω − ω_ref (1/time)", cmap="PuOr_r", vmin=-elim, vmax=elim)
        else:
            for ax in row[1:3]:
                ax.text(0.5, 0.5, "no reference in the store", ha="center", va="center", transform=ax.transAxes)
        row[1].set_title(f"{tag}: reference (grid solver) vorticity\n{t}", fontsize=9)
        row[2].set_title(f"{tag}: error: prediction − reference\n{t}", fontsize=9)
        for ax in row[:3]:
            ax.set(xlabel=f"x ({xu})", ylabel=f"y ({xu})")
        _label_row(row[0], tag, r)
        ax = row[3]
        n = r.steps_done
        tt = ds["time"].values[:n]
        ax.plot(tt, ds["kinetic_energy"].values[:n], marker="o", ms=3, color="C0", label="prediction (INSR)",
                ls="--" if is_capped(r) else "-")
        if "kinetic_energy_ref" in ds:
            ax.plot(tt, ds["kinetic_energy_ref"].values[:n], "k:", label="reference (grid solver)")
        ax.axvline(float(ds["time"].values[k]), color="0.5", lw=0.8, label="time of the maps")
        ax.set(xlabel="time t (simulation units)", ylabel="kinetic energy ½∫|u|² dx (dimensionless)",
               title=f"{tag}: kinetic energy history")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{_who(pairs, when)}; same colour limits for prediction and reference; "
                 "one error scale for both runs", fontsize=10)
    fig.tight_layout(h_pad=4.5)  # room for the row's run title
    return fig


def _reference_positions(ds) -> np.ndarray | None:
    text = ds["points"].attrs.get("reference_positions", "")
    try:
        pts = [tuple(float(v) for v in p.strip(" ()").split(",")) for p in text.split("), (")]
        return np.array(pts)
    except ValueError:
        return None


def _mesh_body(pairs, stores):
    """Mesh bodies: 3D, the deformed surface of the best and worst run at the same time
    (FEM wireframe over it, colliders drawn); 2D, the best run's boundary at its first,
    middle and last step, FEM points over it."""
    from insr_hpc.pde.mesh_render import body_figure

    steps, when = common_steps(pairs, stores)
    ds0 = stores[0]
    attrs = {k: ds0.attrs.get(k) for k in ("ground", "sphere")}
    attrs = {k: (json.loads(v) if isinstance(v, str) else v) for k, v in attrs.items()}
    faces = np.asarray(ds0["mesh_faces"].values, dtype=np.int64)
    if ds0.sizes["component"] == 3:
        frames = [np.asarray(ds["vertices"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
        refs = [np.asarray(ds["vertices_ref"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
        times = [float(ds["time"].values[k]) for ds, k in zip(stores, steps, strict=True)]
        fig = body_figure(faces, frames, times, references=refs, attrs=attrs)
        panels = [ax for ax in fig.axes if ax.name == "3d"]
        for ax, (tag, r), t in zip(panels, pairs, times, strict=False):
            ax.set_title(f"{_run_title(tag, r, 44)}\nt = {t:.4g}", fontsize=8)
        fig.suptitle(f"{_who(pairs, when)}; lengths dimensionless", fontsize=10)
        fig.subplots_adjust(top=0.78)
        return fig
    (tag, r), ds = pairs[0], stores[0]
    last = r.steps_done - 1
    chosen = sorted({0, last // 2, last})
    fig = body_figure(faces, [np.asarray(ds["vertices"].values[k], dtype=np.float64) for k in chosen],
                      [float(ds["time"].values[k]) for k in chosen],
                      references=[np.asarray(ds["vertices_ref"].values[k], dtype=np.float64) for k in chosen], attrs=attrs)
    ax = fig.axes[0]
    ax.set_title(f"{_run_title(tag, r, 60)}\nboundary at t = {', '.join(f'{float(ds.time.values[k]):.3g}' for k in chosen)}; "
                 "lengths dimensionless", fontsize=8)
    fig.tight_layout()
    return fig


def _elasticity(pairs, stores):
    if "mesh_points" in stores[0].variables:
        return _mesh_body(pairs, stores)
    plt = _plt()
    steps, when = common_steps(pairs, stores)
    fig, axes = plt.subplots(len(pairs), 3, figsize=(17, 3.6 * len(pairs)), squeeze=False)
    got = [np.asarray(ds["points"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
    ref = [np.asarray(ds["points_ref"].values[k], dtype=np.float64) for ds, k in zip(stores, steps, strict=True)]
    allpts = np.concatenate(got + ref)
    lo, hi = np.nanmin(allpts, axis=0), np.nanmax(allpts, axis=0)
    pad = 0.05 * np.maximum(hi - lo, 1e-9)
    dist = [np.linalg.norm(g - q, axis=1) for g, q in zip(got, ref, strict=True)]
    dmax = max(float(np.nanmax(d)) for d in dist) or 1.0
    for row, (tag, r), ds, k, g, q, d in zip(axes, pairs, stores, steps, got, ref, dist, strict=True):
        unit = _unit(ds["points"].attrs)
        unit = "length units" if unit == "dimensionless" else unit
        t = f"t = {float(ds['time'].values[k]):.4g} (step {k})"
        rest = _reference_positions(ds)
        for ax, pts, what, style in ((row[0], g, "prediction (INSR deformed points)", dict(marker="o", mfc="none", color="C3")),
                                     (row[1], q, "reference (FEM)", dict(marker="x", color="k"))):
            if rest is not None:
                ax.plot(*rest.T, "s", color="0.8", ms=4, label="rest configuration")
            ax.plot(*pts.T, ls="none", label=what.split(" (")[0], **style)
            ax.set_title(f"{tag}: {what}\n{t}", fontsize=9)
            ax.legend(fontsize=7, loc="best")
        sc = row[2].scatter(*q.T, c=d, cmap="magma_r", vmin=0, vmax=dmax, s=28, edgecolors="0.3", linewidths=0.3)
        fig.colorbar(sc, ax=row[2], shrink=0.6, label=f"|x − x_ref| ({unit})")
        row[2].set_title(f"{tag}: error |prediction − reference| at the FEM points\n{t}", fontsize=9)
        for ax in row:
            ax.set(aspect="equal", xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]),
                   xlabel=f"x ({unit})", ylabel=f"y ({unit})")
        _label_row(row[0], tag, r)
    fig.suptitle(f"{_who(pairs, when)}; same axes for prediction and reference", fontsize=10)
    fig.tight_layout(h_pad=4.5)  # room for the row's run title
    return fig


def _recon(pairs, stores):
    plt = _plt()
    fig, axes = plt.subplots(len(pairs), 3, figsize=(15, 3.9 * len(pairs)), squeeze=False)
    truths = [np.asarray(ds["target"].values[0], dtype=np.float64) for ds in stores]
    recs = [np.asarray(ds["reconstruction"].values[0], dtype=np.float64) for ds in stores]
    finite = np.concatenate([a[np.isfinite(a)] for a in truths + recs]) if truths else np.zeros(1)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    errs = [rec - truth for rec, truth in zip(recs, truths, strict=True)]
    lim = max((float(np.nanmax(np.abs(e))) for e in errs if np.isfinite(e).any()), default=0.0) or 1.0
    for row, (tag, r), ds, truth, rec, err in zip(axes, pairs, stores, truths, recs, errs, strict=True):
        land = ~np.isfinite(truth)
        lon, lat = ds["longitude"].values, ds["latitude"].values
        extent = (lon.min(), lon.max(), lat.min(), lat.max())
        units = ds["target"].attrs.get("units", "") or "dimensionless"
        when = "time index 0"
        if "time" in ds.variables and ds["time"].size:
            when += f" ({_short(ds['time'].values[0], 24)})"
        for ax, img, what, kw, cbar in (
            (row[0], rec, "prediction (reconstruction)", dict(cmap="viridis", vmin=lo, vmax=hi), units),
            (row[1], truth, "reference (source field)", dict(cmap="viridis", vmin=lo, vmax=hi), units),
            (row[2], err, "error: prediction − reference", dict(cmap="RdBu_r", vmin=-lim, vmax=lim), units),
        ):
            cmap = plt.get_cmap(kw.pop("cmap")).with_extremes(bad="0.6")  # land / no data in grey
            im = ax.imshow(np.ma.masked_where(land, img), origin="lower", extent=extent, aspect="auto", cmap=cmap, **kw)
            ax.set(xlabel="longitude (°E)", ylabel="latitude (°N)")
            ax.set_title(f"{tag}: {what}\n{when}", fontsize=9)
            fig.colorbar(im, ax=ax, label=cbar)
        _label_row(row[0], tag, r)
    fig.suptitle(f"{_who(pairs)}; same colour limits for prediction and reference; "
                 "one error scale for both runs; grey: land / no data", fontsize=10)
    fig.tight_layout(h_pad=4.5)  # room for the row's run title
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

"""Figures and VTU export of runs on a simplicial body (elastodynamics on a mesh).

A mesh run's store holds the body's reference positions ``mesh_points`` (vertex,
component), its outward-oriented boundary faces ``mesh_faces`` (face, corner: edges in
2D, triangles in 3D) and per step the deformed vertex positions from the network,
``vertices`` (step, vertex, component), and from the FEM reference, ``vertices_ref``.
Attributes: ``ground`` (the collider plane's coordinate along the last axis, "down"
being −y in 2D, −z in 3D; None without one) and ``sphere`` ([] or [c₁ … c_d, r]).

* :func:`mesh_figure`: 3D, one panel per chosen step with the deformed boundary
  surface (flat shaded), the FEM reference as a wireframe, the ground plane and the
  sphere; 2D, the deformed boundary curves of all chosen steps in one axes, coloured
  by time.
* :func:`export_vtu`: the deformed boundary (triangles or lines) through meshio, with
  point data ``displacement`` = x − X, one file or one per step.

Lengths are dimensionless (units "1"), like the case's. Off-screen (Agg) throughout.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from insr_hpc.errors import InsrError

MAX_PANEL_COLS = 4
ELEV, AZIM = 22.0, -58.0  # 3D view (degrees)
LIGHT = np.array([-0.35, -0.5, 0.8]) / np.linalg.norm([-0.35, -0.5, 0.8])
SURFACE_RGB = np.array([0.27, 0.51, 0.71])  # steel blue
REFERENCE_COLOUR = "#d95f02"
COLLIDER_COLOUR = "0.45"


def _attrs(ds, attrs: dict | None) -> dict[str, Any]:
    """``ground`` and ``sphere`` from ``attrs`` or, when None, from ``ds.attrs`` (JSON
    text there is decoded)."""
    src = dict(ds.attrs if attrs is None else attrs)
    out = {}
    for key, default in (("ground", None), ("sphere", [])):
        value = src.get(key, default)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise InsrError(f"render: attribute '{key}' is not JSON: {value[:80]!r}") from None
        out[key] = value
    ground = out["ground"]
    out["ground"] = None if ground is None or (isinstance(ground, float) and not np.isfinite(ground)) else float(ground)
    out["sphere"] = [float(v) for v in (out["sphere"] or [])]
    return out


def _require(ds, *names: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise InsrError(f"render: the store has no {', '.join(missing)} (not a mesh run?)")


def _positions(ds) -> list[int]:
    """Step labels in store order (the ``step`` coordinate, or 0, 1, … without one)."""
    n = ds.sizes["step"]
    if "step" in ds.coords or "step" in ds.variables:
        return [int(s) for s in np.asarray(ds["step"].values).ravel()]
    return list(range(n))


def _index(ds, step: int) -> int:
    """Position along ``step`` of step label ``step``; a negative value counts from
    the end of the store (−1: the last step)."""
    labels = _positions(ds)
    step = int(step)
    if step in labels:
        return labels.index(step)
    if step < 0 and -step <= len(labels):
        return len(labels) + step
    shown = f"{labels[0]}..{labels[-1]}" if labels else "none"
    raise InsrError(f"render: no step {step} in the store (steps {shown})")


def _times(ds) -> np.ndarray:
    if "time" in ds.variables:
        return np.asarray(ds["time"].values, dtype=np.float64).ravel()
    return np.arange(ds.sizes["step"], dtype=np.float64)


def _frame(ds, name: str, i: int, label: int) -> np.ndarray:
    x = np.asarray(ds[name].isel(step=i).values, dtype=np.float64)
    if not np.isfinite(x).any():
        raise InsrError(f"render: step {label} has no {name} (not written yet)")
    return x


def _union_bbox(frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.min([np.nanmin(f, axis=0) for f in frames], axis=0)
    hi = np.max([np.nanmax(f, axis=0) for f in frames], axis=0)
    return lo, hi


def _edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges of triangles (k, 3) → (e, 2)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def mesh_figure(ds, steps: Sequence[int], reference: bool = True, attrs: dict | None = None):
    """A matplotlib Figure of the deformed body at ``steps`` (step labels of the store;
    negative: counted from the end; empty: the last step).

    3D: one panel per step, the network's deformed boundary surface (flat shading
    with light from above), the FEM reference's as a wireframe (``reference``), the
    ground plane as a translucent square and the sphere as a wireframe; every panel
    has the same limits and a true aspect ratio (the union box of all frames shown and
    the collider). 2D: the deformed boundary of every step in one axes, coloured by
    time, with the FEM reference's boundary vertices as dots and the collider."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _require(ds, "mesh_points", "mesh_faces", "vertices")
    a = _attrs(ds, attrs)
    X = np.asarray(ds["mesh_points"].values, dtype=np.float64)
    faces = np.asarray(ds["mesh_faces"].values, dtype=np.int64)
    d = X.shape[1]
    labels = _positions(ds)
    chosen = [_index(ds, s) for s in steps] if len(steps) else [ds.sizes["step"] - 1]
    times = _times(ds)
    with_ref = reference and "vertices_ref" in ds.variables
    frames = [_frame(ds, "vertices", i, labels[i]) for i in chosen]
    refs = [_frame(ds, "vertices_ref", i, labels[i]) for i in chosen] if with_ref else []
    if d == 3:
        fig = _figure_3d(plt, faces, frames, refs, [times[i] for i in chosen], a)
    elif d == 2:
        fig = _figure_2d(plt, faces, frames, refs, [times[i] for i in chosen], a)
    else:
        raise InsrError(f"render: mesh_points has {d} components (2 or 3 expected)")
    return fig


def body_figure(faces: np.ndarray, frames: Sequence[np.ndarray], times: Sequence[float],
                references: Sequence[np.ndarray] | None = None, attrs: dict | None = None):
    """:func:`mesh_figure` from arrays: boundary ``faces`` (k, d), deformed vertex
    positions per frame (n, d), their times, optional FEM positions per frame and the
    collider attributes (``ground``, ``sphere``). What a run draws every few steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = {"ground": None, "sphere": [], **(attrs or {})}
    frames = [np.asarray(f, dtype=np.float64) for f in frames]
    refs = [np.asarray(r, dtype=np.float64) for r in references] if references is not None else []
    draw = _figure_3d if frames[0].shape[1] == 3 else _figure_2d
    return draw(plt, np.asarray(faces, dtype=np.int64), frames, refs, list(times), a)


def _front_edges(x: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Edges (e, 2) of the triangles that face the viewer (the default view): the
    wireframe is drawn without occlusion, so back faces would show through."""
    e, a = np.radians(ELEV), np.radians(AZIM)
    view = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    tri = x[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return _edges(faces[n @ view > 0])


def _shaded(tri: np.ndarray) -> np.ndarray:
    """RGBA per triangle: Lambert shading of its outward normal under :data:`LIGHT`."""
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    lum = 0.45 + 0.55 * np.clip(n @ LIGHT, 0.0, 1.0)
    rgb = np.clip(SURFACE_RGB[None, :] * lum[:, None] + 0.12 * lum[:, None], 0, 1)
    return np.concatenate([rgb, np.ones((len(tri), 1))], axis=1)


def _figure_3d(plt, faces, frames, refs, times, a):
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d.art3d import Line3DCollection, Poly3DCollection

    lo, hi = _union_bbox(frames + refs)
    sphere = a["sphere"]
    if len(sphere) == 4:
        c, r = np.array(sphere[:3]), sphere[3]
        lo, hi = np.minimum(lo, c - r), np.maximum(hi, c + r)
    ground = a["ground"]
    if ground is not None:
        span = hi[:2] - lo[:2]
        pad = 0.15 * max(float(span.max()), 1e-6)
        plo, phi = lo[:2] - pad, hi[:2] + pad
        lo = np.array([plo[0], plo[1], min(lo[2], ground)])
        hi = np.array([phi[0], phi[1], max(hi[2], ground)])
    extent = np.maximum(hi - lo, 1e-3 * max(float((hi - lo).max()), 1e-9))
    margin = 0.02 * extent
    lo, hi = lo - margin, hi + margin
    k = len(frames)
    cols = min(k, MAX_PANEL_COLS)
    rows = -(-k // cols)
    flatness = float(extent[2] / max(extent[0], extent[1]))
    panel_h = 4.6 * (0.62 + 0.38 * min(flatness, 1.0))
    fig = plt.figure(figsize=(max(4.8 * cols, 8.0), panel_h * rows + 1.4))
    for p, (x, t) in enumerate(zip(frames, times, strict=True)):
        ax = fig.add_subplot(rows, cols, p + 1, projection="3d")
        if ground is not None:
            square = [[plo[0], plo[1], ground], [phi[0], plo[1], ground], [phi[0], phi[1], ground], [plo[0], phi[1], ground]]
            ax.add_collection3d(Poly3DCollection([square], facecolor="0.6", edgecolor="0.35", alpha=0.25, linewidths=0.6))
        if len(sphere) == 4:
            u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
            ax.plot_wireframe(c[0] + r * np.cos(u) * np.sin(v), c[1] + r * np.sin(u) * np.sin(v), c[2] + r * np.cos(v),
                              color=COLLIDER_COLOUR, linewidth=0.5, alpha=0.7)
        tri = x[faces]
        ok = np.isfinite(tri).all(axis=(1, 2))
        ax.add_collection3d(Poly3DCollection(tri[ok], facecolors=_shaded(tri[ok]), edgecolors=(0, 0, 0, 0.12),
                                             linewidths=0.2))
        if refs:
            seg = refs[p][_front_edges(refs[p], faces)]
            seg = seg[np.isfinite(seg).all(axis=(1, 2))]
            ax.add_collection3d(Line3DCollection(seg, colors=REFERENCE_COLOUR, linewidths=0.35, alpha=0.55))
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_zlim(lo[2], hi[2])
        ax.set_box_aspect(tuple(hi - lo), zoom=1.2)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel("x", labelpad=-4)
        ax.set_ylabel("y", labelpad=-4)
        ax.set_zlabel("z", labelpad=-6)
        ax.tick_params(labelsize=7, pad=-2)
        ax.view_init(elev=ELEV, azim=AZIM)
        ax.set_title(f"t = {t:.4g}", fontsize=11)
    handles = [Patch(facecolor=SURFACE_RGB, edgecolor="0.2", label="INSR surface")]
    if refs:
        handles.append(Line2D([], [], color=REFERENCE_COLOUR, linewidth=1.0, label="FEM reference (wireframe)"))
    if ground is not None:
        handles.append(Patch(facecolor="0.6", alpha=0.4, edgecolor="0.35", label=f"collider: ground z = {ground:.3g}"))
    if len(sphere) == 4:
        handles.append(Line2D([], [], color=COLLIDER_COLOUR, label=f"collider: sphere r = {sphere[3]:.3g}"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 2 * cols), frameon=False, fontsize=9)
    fig.suptitle("Deformed body (boundary surface); lengths dimensionless (units 1)", fontsize=12)
    fig.subplots_adjust(left=0.02, right=0.96, top=0.86, bottom=0.16, wspace=0.08)
    return fig


def _figure_2d(plt, faces, frames, refs, times, a):
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, Patch
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    lo, hi = _union_bbox(frames + refs)
    sphere = a["sphere"]
    if len(sphere) == 3:
        lo = np.minimum(lo, np.array(sphere[:2]) - sphere[2])
        hi = np.maximum(hi, np.array(sphere[:2]) + sphere[2])
    pad = 0.08 * max(float((hi - lo).max()), 1e-6)
    ground = a["ground"]
    if ground is not None:
        lo[1], hi[1] = min(lo[1], ground - pad), max(hi[1], ground)
    lo, hi = lo - pad, hi + pad
    w, h = hi - lo
    ax_w = 7.0 if w >= h else max(2.5, min(7.0, 5.5 * w / h))
    ax_h = max(1.6, min(5.5, ax_w * h / w))
    fig, ax = plt.subplots(figsize=(ax_w + 1.8, ax_h + 1.8))
    cmap = plt.get_cmap("viridis")
    tmin, tmax = min(times), max(times)
    norm = plt.Normalize(tmin, tmax if tmax > tmin else tmin + 1.0)
    for x, t in zip(frames, times, strict=True):
        ax.add_collection(LineCollection(x[faces], colors=[cmap(norm(t))], linewidths=1.4, zorder=3))
    bverts = np.unique(faces)
    for y in refs:
        ax.plot(y[bverts, 0], y[bverts, 1], ".", color=REFERENCE_COLOUR, markersize=2.5, zorder=4)
    if len(sphere) == 3:
        ax.add_patch(Circle((sphere[0], sphere[1]), sphere[2], facecolor="0.8", edgecolor=COLLIDER_COLOUR, zorder=1))
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    if ground is not None:
        ax.axhspan(lo[1] - pad, ground, facecolor="0.85", edgecolor="none", zorder=0)
        ax.axhline(ground, color=COLLIDER_COLOUR, linewidth=1.2, zorder=1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (1)")
    ax.set_ylabel("y (1)")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cax = make_axes_locatable(ax).append_axes("right", size=0.15, pad=0.12)
    fig.colorbar(sm, cax=cax, label="time t (1)")
    handles = [Line2D([], [], color=cmap(0.6), linewidth=1.4, label="INSR boundary")]
    if refs:
        handles.append(Line2D([], [], color=REFERENCE_COLOUR, marker=".", linestyle="none", label="FEM reference"))
    if ground is not None:
        handles.append(Patch(facecolor="0.85", edgecolor=COLLIDER_COLOUR, label=f"collider: ground y = {ground:.3g}"))
    if len(sphere) == 3:
        handles.append(Patch(facecolor="0.8", edgecolor=COLLIDER_COLOUR, label=f"collider: circle r = {sphere[2]:.3g}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=len(handles), fontsize=8,
              frameon=False)
    shown = ", ".join(f"{t:.3g}" for t in times) if len(times) <= 6 else f"{len(times)} steps, {tmin:.3g} to {tmax:.3g}"
    ax.set_title(f"Deformed body boundary at t = {shown}\nlengths dimensionless (units 1)", fontsize=11)
    fig.tight_layout()
    return fig


def _surface_mesh(ds, i: int, label: int, reference: bool):
    import meshio

    X = np.asarray(ds["mesh_points"].values, dtype=np.float64)
    faces = np.asarray(ds["mesh_faces"].values, dtype=np.int64)
    x = _frame(ds, "vertices_ref" if reference else "vertices", i, label)
    used = np.unique(faces)
    remap = np.full(len(X), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    d = X.shape[1]

    def pad3(v):
        return np.concatenate([v, np.zeros((len(v), 3 - d))], axis=1) if d < 3 else v

    point_data = {"displacement": pad3(x[used] - X[used]), "vertex": used.astype(np.int64)}
    other = "vertices" if reference else "vertices_ref"
    if other in ds.variables:
        y = np.asarray(ds[other].isel(step=i).values, dtype=np.float64)[used]
        if np.isfinite(y).any():
            point_data["insr_fem_distance"] = np.linalg.norm(x[used] - y, axis=1)
    cells = [("triangle" if d == 3 else "line", remap[faces])]
    return meshio.Mesh(pad3(x[used]), cells, point_data=point_data)


def _write_atomic(meshes: list, paths: list[str]) -> None:
    from insr_hpc.pde.mesh import write_meshio_files

    try:
        write_meshio_files(meshes, paths)
    except InsrError:
        raise
    except Exception as exc:
        raise InsrError(f"render: cannot write '{paths[0]}': {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None


def export_vtu(ds, out: str, step: int | None = None, reference: bool = False) -> list[str]:
    """Write the deformed boundary (triangles in 3D, lines in 2D; only the boundary's
    vertices) through meshio, the format from ``out``'s extension, with point data
    ``displacement`` (x − X, 3 components), ``vertex`` (the vertex's index in the
    mesh) and, when the store has both, ``insr_fem_distance`` |x − x_FEM|.
    ``reference``: the FEM reference's deformed boundary instead of the network's.

    ``step`` (a step label; negative: from the end) writes ``out``; None with ``out``
    ending in .vtu writes one file per written step, ``out`` with ``_NNNN`` (the step
    label) before the suffix. Every file is written to a temporary name first and
    renamed when all are written. Returns the paths written."""
    _require(ds, "mesh_points", "mesh_faces", "vertices_ref" if reference else "vertices")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise InsrError(f"render: cannot write '{out}' (directory '{parent}' does not exist)")
    labels = _positions(ds)
    name = "vertices_ref" if reference else "vertices"
    if step is not None:
        i = _index(ds, step)
        meshes, paths = [_surface_mesh(ds, i, labels[i], reference)], [out]
    else:
        stem, ext = os.path.splitext(out)
        if ext.lower() != ".vtu":
            raise InsrError(f"render: '{out}': give a step, or an output ending in .vtu for one file per step")
        values = np.asarray(ds[name].values)
        written = [i for i in range(len(labels)) if np.isfinite(values[i]).any()]
        if not written:
            raise InsrError(f"render: the store has no written {name}")
        width = max(4, len(str(max(labels))))
        meshes = [_surface_mesh(ds, i, labels[i], reference) for i in written]
        paths = [f"{stem}_{labels[i]:0{width}d}{ext}" for i in written]
    _write_atomic(meshes, paths)
    return paths

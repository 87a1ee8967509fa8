"""``insr-hpc render STORE --step N --resolution R --out FILE.zarr|FILE.png``.

A run's store holds the network weights of every step and their layout
(``param_layout``), so the field can be evaluated anywhere, at any resolution, long
after the run: the networks are rebuilt from the store alone (the model registry and
the stored config's ``network`` section), loaded with the step's weights and evaluated
on a uniform grid of R points per dimension spanning the stored grid's extent (at the
stored resolution that is the stored grid itself).

* PDE store: every field network (``attrs["fields"]``) at step N, on x (1-D) or (y, x);
  Euler also gets the vorticity ω = ∂v/∂x − ∂u/∂y by automatic differentiation.
* Reconstruction store: the field at time index N on (latitude, longitude), in
  physical units (the store's ``normalisation``).
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import numpy as np
import torch

from insr_hpc.errors import InsrError
from insr_hpc.fields import MODELS, build_model, load_flat_params
from insr_hpc.fields.registry import latent_size
from insr_hpc.store import StepStore, StoreFormatError, decode_attrs

MAX_POINTS = 2**26  # grid points per render (8192² in 2-D): ~1 GiB of float32 per output
CHUNK = 2**15  # points evaluated at once


def _decoded(ds):
    """``ds`` (shallow copy) with its nested attributes (config, param_layout, fields,
    normalisation: JSON text in the store) decoded; a no-op on decoded ones."""
    out = ds.copy(deep=False)
    out.attrs = decode_attrs(ds.attrs)
    return out


def _network_params(ds):
    """The store's network Params (config ``network`` section, via the model registry)."""
    net_cfg = dict(ds.attrs["config"]["network"])
    return MODELS.get(net_cfg["model"]).Params(**net_cfg)


def _network(ds, in_dim: int, out_dim: int, flat: np.ndarray | None):
    """The store's network (:func:`_network_params`) with ``flat`` loaded into it."""
    model = build_model(_network_params(ds), in_dim, out_dim)
    if flat is not None:
        try:
            load_flat_params(model, np.asarray(flat, dtype=np.float32))
        except ValueError as exc:
            raise InsrError(f"render: stored weights do not fit the stored network: {exc}") from exc
    return model.eval()


def _split_weights(layout: list[dict], flat: np.ndarray, field: str) -> np.ndarray:
    """The slice of a flat weight vector that belongs to ``field`` (layout names are
    prefixed ``field.``)."""
    entries = [e for e in layout if e["name"].startswith(field + ".")]
    if not entries:
        raise InsrError(f"render: param_layout has no parameters of field '{field}'")
    start = min(e["offset"] for e in entries)
    stop = max(e["offset"] + e["size"] for e in entries)
    return flat[start:stop]


def _axis(ds, name: str, resolution: int) -> np.ndarray:
    values = np.asarray(ds[name].values, dtype=np.float64)
    return np.linspace(values.min(), values.max(), resolution)


def pde_axes(ds, in_dim: int, resolution: int) -> dict[str, np.ndarray]:
    """Render axes (x; or y, x) over the stored grid's extent; elasticity stores no grid,
    its bar is [0, length] × [−height/2, height/2]."""
    names = ["x"] if in_dim == 1 else ["y", "x"]
    if all(n in ds.variables for n in names):
        return {n: _axis(ds, n, resolution) for n in names}
    problem = ds.attrs["config"].get("problem", {})
    if in_dim == 2 and "length" in problem and "height" in problem:
        h = float(problem["height"]) / 2
        return {"y": np.linspace(-h, h, resolution), "x": np.linspace(0.0, float(problem["length"]), resolution)}
    raise InsrError("render: the store has no x/y coordinates to take the domain from")


def _points(axes: dict[str, np.ndarray]) -> np.ndarray:
    if list(axes) == ["x"]:
        return axes["x"][:, None]
    Y, X = np.meshgrid(axes["y"], axes["x"], indexing="ij")
    return np.stack([X.ravel(), Y.ravel()], axis=1)  # networks take (x, y)


def _evaluate(model, pts: np.ndarray, curl: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    outs, vort = [], []
    for k in range(0, len(pts), CHUNK):
        x = torch.as_tensor(pts[k : k + CHUNK], dtype=torch.float32)
        if curl:
            x.requires_grad_(True)
            uv = model(x)
            du = torch.autograd.grad(uv[:, 0].sum(), x, retain_graph=True)[0]
            dv = torch.autograd.grad(uv[:, 1].sum(), x)[0]
            vort.append((dv[:, 0] - du[:, 1]).detach().numpy())
            outs.append(uv.detach().numpy())
        else:
            with torch.no_grad():
                outs.append(model(x).numpy())
    return np.concatenate(outs), (np.concatenate(vort) if curl else None)


def _check(ds, step: int, resolution: int, n_dims: int, record: str) -> None:
    if resolution <= 0:
        raise InsrError(f"render: --resolution must be > 0, got {resolution}")
    if resolution**n_dims > MAX_POINTS:
        limit = int(round(MAX_POINTS ** (1 / n_dims)))
        raise InsrError(
            f"render: --resolution {resolution} gives {resolution}^{n_dims} = {resolution**n_dims} points; "
            f"the limit is {MAX_POINTS} points (resolution {limit} in {n_dims}-D)"
        )
    n = int(ds["committed"].size) if record == "step" else int(ds.sizes.get("time", 0))
    if not 0 <= step < n:
        raise InsrError(f"render: --step {step} is outside 0..{n - 1}")


def render_pde(ds, step: int, resolution: int):
    """The fields of a PDE store at ``step`` on a ``resolution``-point grid (xarray.Dataset)."""
    ds = _decoded(ds)
    import xarray as xr

    fields: dict[str, list[int]] = ds.attrs["fields"]
    n_dims = max(int(v[0]) for v in fields.values())
    _check(ds, step, resolution, n_dims, "step")
    if not bool(ds["committed"].values[step]):
        done = np.flatnonzero(np.asarray(ds["committed"].values).astype(bool))
        last = f"last committed step: {done.max()}" if done.size else "no step is committed"
        raise InsrError(f"render: step {step} is not committed ({last})")
    axes = pde_axes(ds, n_dims, resolution)
    pts = _points(axes)
    flat = np.asarray(ds["weights"].values[step])
    grid_dims = tuple(axes)
    shape = tuple(len(a) for a in axes.values())
    out: dict[str, Any] = {}
    case = ds.attrs.get("case", "")
    for name, (in_dim, out_dim) in fields.items():
        model = _network(ds, int(in_dim), int(out_dim), _split_weights(ds.attrs["param_layout"], flat, name))
        curl = case == "euler" and name == "u"
        values, vort = _evaluate(model, pts, curl=curl)
        long_name = f"network '{name}' at step {step}"
        if int(out_dim) == 1:
            out[name] = (grid_dims, values[:, 0].reshape(shape), {"long_name": long_name, "units": "1"})
        else:
            out[name] = ((*grid_dims, "component"), values.reshape(*shape, int(out_dim)), {"long_name": long_name, "units": "1"})
        if vort is not None:
            out["vorticity"] = (grid_dims, vort.reshape(shape), {"long_name": "vorticity ∂v/∂x − ∂u/∂y (autograd)", "units": "1"})
    time = float(ds["time"].values[step]) if "time" in ds.variables else float("nan")
    coords = {n: (n, a, {"long_name": n, "units": "1"}) for n, a in axes.items()}
    attrs = {"source_store": ds.encoding.get("source", ""), "step": step, "time": time, "case": case,
             "resolution": resolution, "n_params": int(flat.size), "run_id": ds.attrs.get("run_id", "")}
    return xr.Dataset(out, coords=coords, attrs=attrs)


def render_recon(ds, index: int, resolution: int):
    """A reconstruction store's field at time index ``index`` on a ``resolution``²
    (latitude, longitude) grid, in the source's units."""
    ds = _decoded(ds)
    _check(ds, index, resolution, 2, "time")
    if not ds.attrs.get("complete"):
        raise InsrError("render: the reconstruction is not complete (its weights are written at the end of training)")
    return recon_on_grid(ds, index, _axis(ds, "latitude", resolution), _axis(ds, "longitude", resolution))


def recon_on_grid(ds, index: int, lat: np.ndarray, lon: np.ndarray):
    """The reconstruction network at time index ``index`` on the (lat, lon) grid given
    (degrees), with the trainer's input normalisation (min–max of the stored grid)."""
    import xarray as xr

    ds = _decoded(ds)

    lat_s, lon_s = np.asarray(ds["latitude"].values, float), np.asarray(ds["longitude"].values, float)
    n_t = int(ds.sizes["time"])

    def unit(v, ref):
        span = ref.max() - ref.min()
        return (v - ref.min()) / span if span > 0 else np.zeros_like(v)

    la, lo = np.meshgrid(unit(lat, lat_s), unit(lon, lon_s), indexing="ij")
    grid = np.stack([la.ravel(), lo.ravel()], axis=1)
    weights = np.asarray(ds["weights"].values)
    # as the trainer does: a latent-modulated model sees (lat, lon), others (lat, lon, t)
    in_dim = 2 if latent_size(_network_params(ds)) else 3
    model = _network(ds, in_dim, 1, weights)
    t_norm = np.linspace(0.0, 1.0, n_t)[index] if n_t > 1 else 0.0
    preds = []
    with torch.no_grad():
        for k in range(0, len(grid), CHUNK):
            x = torch.as_tensor(grid[k : k + CHUNK], dtype=torch.float32)
            if in_dim == 2:
                codes = torch.as_tensor(np.asarray(ds["latent_code"].values), dtype=torch.float32)
                preds.append(model(x, codes=codes, index=torch.full((len(x),), index, dtype=torch.long)).numpy())
            else:
                t = torch.full((len(x), 1), float(t_norm), dtype=torch.float32)
                preds.append(model(torch.cat([x, t], dim=-1)).numpy())
    norm = ds.attrs["normalisation"]
    values = norm["lo"] + np.concatenate(preds)[:, 0].astype(np.float64) * (norm["hi"] - norm["lo"])
    attrs = {k: ds["reconstruction"].attrs[k] for k in ("units", "standard_name") if k in ds["reconstruction"].attrs}
    variable = ds.attrs.get("variable", "field")
    if ds.attrs.get("model") == "hybrid":
        # a hybrid's reconstruction is b + w (n − b) with b an interpolant of the observations,
        # which is not a function of position the store can evaluate elsewhere: what renders
        # off the stored grid is its network n alone, and is named so
        name, long_name = "network_alone", (f"{variable} by the hybrid's network alone (its reconstruction, the store's "
                                      f"'reconstruction', is interpolant + w·(network − interpolant), "
                                      f"w = {float(ds.attrs.get('blend_weight') or 0.0):.2f})")
    else:
        name, long_name = "reconstruction", f"{variable} rendered by the network"
    out = {name: (("latitude", "longitude"), values.reshape(len(lat), len(lon)).astype(np.float32),
                  {**attrs, "long_name": long_name})}
    coords = {"latitude": ("latitude", lat, dict(ds["latitude"].attrs)), "longitude": ("longitude", lon, dict(ds["longitude"].attrs))}
    return xr.Dataset(out, coords=coords, attrs={"time_index": index, "time": str(ds["time"].values[index]),
                                                 "resolution": len(lat), "run_id": ds.attrs.get("run_id", ""),
                                                 "note": "no land mask: the network is defined everywhere"})


def _open(store: str):
    """A run store's dataset, attributes decoded; a one-line error when it is none."""
    try:
        ds = StepStore.dataset(store)
    except StoreFormatError as exc:
        raise InsrError(f"render: '{store}' is not a run store: {exc}") from exc
    return _decoded(ds)


def render(store: str, step: int, resolution: int, ds=None):
    """Render a PDE or reconstruction store (dispatch on ``attrs["workload"]``); ``ds``:
    the store already opened (:func:`_open`)."""
    ds = _open(store) if ds is None else ds
    for key in ("config", "param_layout"):
        if not isinstance(ds.attrs.get(key), dict | list):
            raise InsrError(f"render: '{store}' has no usable attribute '{key}'")
    if ds.attrs.get("workload") == "recon":
        return render_recon(ds, step, resolution)
    return render_pde(ds, step, resolution)


def figure(rendered):
    """A figure of a rendered Dataset: a line (1-D) or one map per variable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rendered.data_vars)
    if "x" in rendered.dims and "y" not in rendered.dims:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        for name in names:
            v = rendered[name]
            ax.plot(rendered.x, v.values if v.ndim == 1 else np.linalg.norm(v.values, axis=-1), label=name)
        ax.set(xlabel="x (dimensionless)", ylabel="value (1)", title=f"run {rendered.attrs.get('run_id')}: step {rendered.attrs['step']}, "
               f"t = {rendered.attrs['time']:.3g}, {rendered.sizes['x']} points")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.4), squeeze=False)
    ydim, xdim = ("latitude", "longitude") if "latitude" in rendered.dims else ("y", "x")
    for ax, name in zip(axes[0], names, strict=True):
        v = rendered[name].values
        label = "|u| (speed)" if v.ndim == 3 else name
        img = np.linalg.norm(v, axis=-1) if v.ndim == 3 else v
        if name == "p":  # pressure is defined up to a constant: show it about its mean
            img, label = img - img.mean(), "p − mean(p)"
        x, y = rendered[xdim].values, rendered[ydim].values
        diverging = name in ("vorticity", "p")
        lim = float(np.nanmax(np.abs(img))) or 1.0
        kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if diverging else dict(cmap="viridis")
        im = ax.imshow(img, origin="lower", extent=(x[0], x[-1], y[0], y[-1]), aspect="auto" if ydim == "latitude" else "equal", **kw)
        units = rendered[name].attrs.get("units", "1")
        fig.colorbar(im, ax=ax, shrink=0.85, label=f"{label} ({units})")
        where = f"step {rendered.attrs['step']}" if "step" in rendered.attrs else f"time index {rendered.attrs['time_index']}"
        unit = "degrees" if xdim == "longitude" else "dimensionless"  # PDE domains are non-dimensional
        ax.set(xlabel=f"{xdim} ({unit})", ylabel=f"{ydim} ({unit})",
               title=f"{label}, {where}\n{len(y)}×{len(x)} grid from the network")
    if "n_params" in rendered.attrs:
        t = rendered.attrs.get("time", float("nan"))
        fig.suptitle(f"run {rendered.attrs.get('run_id')}: t = {t:.3g}, {rendered.attrs['n_params']} network parameters "
                     f"evaluated on {len(y)}×{len(x)} points", fontsize=11)
    fig.tight_layout()
    return fig


def _steps(text) -> list[int]:
    """``--step``: an integer, or for a mesh body a comma-separated list of them."""
    try:
        return [int(part) for part in str(text).split(",") if part.strip() != ""]
    except ValueError:
        raise InsrError(f"render: --step '{text}' is not an integer (or a comma-separated list of them)") from None


def _render_mesh(ds, store: str, steps: list[int], out: str):
    """A mesh body: its deformed surface at ``steps`` (.png) or exported through meshio (.vtu)."""
    from insr_hpc.pde.mesh_render import export_vtu, mesh_figure

    done = np.flatnonzero(np.asarray(ds["committed"].values).astype(bool))
    for step in steps:
        if step not in done:
            last = f"last committed step: {done.max()}" if done.size else "no step is committed"
            raise InsrError(f"render: step {step} of '{store}' is not committed ({last})")
    if out.endswith(".vtu"):
        if len(steps) == 1:
            return export_vtu(ds, out, step=steps[0])
        paths = []
        for step in steps:
            paths += export_vtu(ds, out[: -len(".vtu")] + f"_{step:04d}.vtu", step=step)
        return paths
    return _save_png(mesh_figure(ds, steps), out)


def _save_png(fig, out: str) -> str:
    """``fig`` written to ``out`` through a temporary file (nothing half-written), closed."""
    import matplotlib.pyplot as plt

    tmp = out + ".partial.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, out)
    return out


def render_to(store: str, step, resolution: int | None, out: str):
    """Render and write ``out`` (``.zarr``: an xarray store; ``.png``: a figure; a mesh
    body also ``.vtu``: its deformed boundary surface, one file per step)."""
    steps = _steps(step)
    if not steps:
        raise InsrError("render: --step is empty")
    if not out.endswith((".zarr", ".png", ".vtu")):
        raise InsrError(f"render: --out '{out}' must end in .zarr, .png or (a mesh body) .vtu")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise InsrError(f"render: cannot write '{out}' (directory '{parent}' missing or not writable)")
    ds = _open(store)
    if "mesh_points" in ds.variables and not out.endswith(".zarr"):
        return _render_mesh(ds, store, steps, out)
    if out.endswith(".vtu"):
        raise InsrError(f"render: --out '{out}': .vtu is for a mesh body's run (this store has no mesh)")
    if len(steps) > 1:
        raise InsrError(f"render: --step '{step}': one step for a grid rendering")
    step = steps[0]
    if resolution is None:
        raise InsrError("render: --resolution is required to evaluate the network on a grid")
    rendered = render(store, step, resolution, ds)
    if out.endswith(".zarr"):
        tmp = out + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        rendered.to_zarr(tmp, mode="w", zarr_format=3, consolidated=True)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    else:
        _save_png(figure(rendered), out)
    return out

"""Error maps and per-latitude error of every reconstruction store under a directory.

    python jobs/recon_error_maps.py runs/reconstruct_sweep [--out DIR]
    mpiexec -n 4 python jobs/recon_error_maps.py runs/reconstruct_sweep

For each finished reconstruction store (``attrs["store_kind"] == "recon"``), from its
``error`` = reconstruction − target (time, latitude, longitude; NaN over land):

* RMSE per latitude over all times and valid longitudes, split into observed and
  unobserved points (the ``observed`` mask);
* the time-mean absolute error map.

Writes OUT/recon_latitude_error.csv (run, latitude, rmse, rmse_unobserved, points) and
OUT/recon_error_maps.png (one row per run: mean |error| map and RMSE vs latitude).
Stores are dealt round robin to MPI ranks; rank 0 writes. Only xarray and numpy.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import warnings

import numpy as np
import xarray as xr

from insr_hpc.analysis.stores import map_stores


def latitude_rmse(error: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RMSE per latitude of a (time, lat, lon) error over valid points, and over the
    unobserved valid points; and the number of valid points per latitude."""
    valid = np.isfinite(error)
    sq = np.where(valid, error, 0.0) ** 2
    count = valid.sum(axis=(0, 2))
    un = valid & ~observed
    count_un = un.sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(sq.sum(axis=(0, 2)) / count)
        rmse_un = np.sqrt(np.where(un, sq, 0.0).sum(axis=(0, 2)) / count_un)
    return rmse, rmse_un, count


def analyse(path: str, root: str) -> dict | None:
    ds = xr.open_zarr(path)
    if ds.attrs.get("store_kind") != "recon" or not ds.attrs.get("complete"):
        return None
    err = ds.error.values.astype(np.float64)
    rmse, rmse_un, count = latitude_rmse(err, ds.observed.values.astype(bool))
    with warnings.catch_warnings():  # land points are NaN at every time: their mean is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        mean_abs = np.nanmean(np.abs(err), axis=0)
    return {"run": os.path.relpath(os.path.dirname(path), root), "lat": ds.latitude.values, "lon": ds.longitude.values,
            "rmse": rmse, "rmse_un": rmse_un, "count": count, "map": mean_abs, "units": ds.error.attrs.get("units", "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--out", default=None, help="output directory (default: ROOT/report)")
    args = ap.parse_args(argv)
    found, size, n_stores = map_stores(args.root, lambda p: analyse(p, args.root))
    if not n_stores:
        if found is not None:
            print(f"recon_error_maps: error: no store.zarr under '{args.root}'", file=sys.stderr)
        return 2
    if found is None:  # not rank 0
        return 0
    results = sorted((r for r in found if r), key=lambda r: r["run"])
    out = args.out or os.path.join(args.root, "report")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "recon_latitude_error.csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["run", "latitude", "rmse", "rmse_unobserved", "points"])
        for r in results:
            for lat, a, b, c in zip(r["lat"], r["rmse"], r["rmse_un"], r["count"], strict=True):
                w.writerow([r["run"], repr(float(lat)), repr(float(a)), repr(float(b)), int(c)])
    if results:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(len(results), 2, figsize=(12, 3.6 * len(results)), squeeze=False,
                                 gridspec_kw={"width_ratios": [2, 1]})
        for (a, b), r in zip(axes, results, strict=True):
            cmap = plt.get_cmap("magma").with_extremes(bad="0.6")
            extent = (r["lon"].min(), r["lon"].max(), r["lat"].min(), r["lat"].max())
            im = a.imshow(np.ma.masked_invalid(r["map"]), origin="lower", extent=extent, aspect="auto", cmap=cmap)
            fig.colorbar(im, ax=a, label=f"mean |error| ({r['units']})")
            a.set(xlabel="longitude (°E)", ylabel="latitude (°N)", title=f"{r['run']}: time-mean |error| (grey: no data)")
            b.plot(r["rmse"], r["lat"], label="all valid points")
            b.plot(r["rmse_un"], r["lat"], "--", label="unobserved points")
            b.set(xlabel=f"RMSE ({r['units']})", ylabel="latitude (°N)", title="RMSE per latitude")
            b.legend(fontsize=7)
            b.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "recon_error_maps.png"), dpi=100)
    print(f"{len(results)} reconstruction store(s) by {size} rank(s) → {out}/recon_latitude_error.csv, recon_error_maps.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Seed ensembling, evaluated from finished stores: the mean of several runs'
reconstructions of the same field, task and observations, scored like one run.

    python benchmarks/recon_ensemble.py runs/ens/r000-seed=1 runs/ens/r001-seed=2 …

Prints each member's MSE (normalised, whole grid / never observed) and the ensemble's.
The runs must share data, task and task seed (checked: same observation mask).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import xarray as xr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from insr_hpc.store import decode_attrs  # noqa: E402


def main() -> None:
    from insr_hpc.recon.metrics import errors

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories holding store.zarr")
    args = ap.parse_args()
    stores = [xr.open_zarr(os.path.join(r, "store.zarr"), chunks=None) for r in args.runs]
    for ds in stores:
        ds.attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store
    first = stores[0]
    truth = first.target.values.astype(np.float64)
    observed = first.observed.values.astype(bool)
    valid = np.isfinite(truth).all(0)
    scale = first.attrs.get("metric_range") or first.attrs["normalisation"]  # older stores: one range for both
    lo, hi = scale["lo"], scale["hi"]
    recs = []
    for run, ds in zip(args.runs, stores, strict=True):
        if not (ds.observed.values.astype(bool) == observed).all():
            raise SystemExit(f"{run}: another observation mask than {args.runs[0]}")
        rec = ds.reconstruction.values.astype(np.float64)
        recs.append(rec)
        e = errors(rec, truth, valid, observed, lo, hi)
        print(f"{run}: seed {ds.attrs['seed']} mse {e['mse']:.3e} held-out {e['mse_unobserved']:.3e} rmse {e['rmse']:.3f}")
    e = errors(np.mean(recs, axis=0), truth, valid, observed, lo, hi)
    print(f"ensemble of {len(recs)}: mse {e['mse']:.3e} held-out {e['mse_unobserved']:.3e} rmse {e['rmse']:.3f}")


if __name__ == "__main__":
    main()

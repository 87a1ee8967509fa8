"""Plot the error history of every PDE run under a directory and print a summary.

    python jobs/plot_errors.py runs/advection [--out errors.png] [--var rel_l2]

Writes ROOT/report/errors.png (beside the other scripts' outputs) unless ``--out`` names
the file; runs under a sweep's ``report/`` are not runs and are skipped.

Adapt freely: it only uses xarray on the stores (see docs/store.md).
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from insr_hpc.analysis.stores import find_stores  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--out", default=None, help="figure path (default: ROOT/report/errors.png)")
    ap.add_argument("--var", default="rel_l2")
    args = ap.parse_args(argv)
    stores = find_stores(args.root)
    if not stores:
        print(f"plot_errors: no store.zarr under '{args.root}'", file=sys.stderr)
        return 2
    fig, ax = plt.subplots(figsize=(7, 4))
    print(f"{'run':40s} {'steps':>7s} {args.var + ' (last)':>16s} {'max':>10s}")
    for path in stores:
        ds = xr.open_zarr(path)
        if args.var not in ds:
            print(f"{path}: no variable '{args.var}', skipped", file=sys.stderr)
            continue
        done = ds.committed.values.astype(bool)
        err = ds[args.var].where(ds.committed == 1)
        run = ds.attrs.get("run_id", os.path.basename(os.path.dirname(path)))
        ax.plot(ds.time.values[done], err.values[done], label=run)
        last = float(err.values[done][-1]) if done.any() else float("nan")
        print(f"{run:40s} {int(done.sum()):>4d}/{done.size:<3d} {last:16.4e} {float(err.max()):10.4e}")
    ax.set(xlabel="time", ylabel=args.var, yscale="log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = args.out or os.path.join(args.root, "report", "errors.png")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"figure: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

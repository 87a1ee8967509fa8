"""Small, fast configs and CLI helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL_ADVECTION = {
    "name": "adv",
    "seed": 0,
    "device": "cpu",
    "problem": {"case": "advection"},
    "network": {"model": "siren", "depth": 2, "width": 20},
    "integrator": {"name": "midpoint"},
    "optim": {"lr": 1e-3, "max_iters": 100, "init_max_iters": 600, "window": 25},
    "time": {"dt": 0.05, "steps": 8},
    "sampling": {"interior": 1000, "boundary": 2},
    "output": {"resolution": 128, "figure_every": 4},
}


def write_config(tmp_path, data: dict, name: str = "cfg.yaml") -> str:
    path = os.path.join(str(tmp_path), name)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(data, fh)
    return path


def cli(*args: str, cwd: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``insr-hpc`` in a fresh interpreter (exit codes and stderr as a user sees them)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", "insr_hpc", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def committed_steps(store: str) -> int:
    """How many steps a store has committed (0 while it does not exist yet)."""
    import numpy as np
    import zarr

    try:
        return int(np.asarray(zarr.open_group(store, mode="r")["committed"][:]).sum())
    except Exception:
        return 0


def write_tas(path, vals, lat, lon) -> None:
    """A small netCDF field ``tas`` (time, lat, lon) in K, daily, for reconstruction tests."""
    import numpy as np
    import xarray as xr

    xr.Dataset(
        {"tas": (("time", "lat", "lon"), vals.astype(np.float32), {"units": "K"})},
        coords={"time": ("time", np.arange(vals.shape[0]) * 1.0, {"units": "days since 2000-01-01"}),
                "lat": ("lat", lat, {"units": "degrees_north"}), "lon": ("lon", lon, {"units": "degrees_east"})},
    ).to_netcdf(path)


def run_recon(tmp, name, path, *overrides):
    """``insr-hpc run configs/reconstruct.yaml`` on the field ``tas`` of ``path`` in-process:
    (exit code, run.json, decoded store attributes, run directory)."""
    import json

    import zarr

    from insr_hpc.cli import main
    from insr_hpc.store import decode_attrs

    code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp / 'runs'}", f"name={name}",
                 f"data.path={path}", "data.variable=tas", *overrides])
    run_dir = tmp / "runs" / name / "r000"
    with open(run_dir / "run.json") as fh:
        state = json.load(fh)
    return code, state, decode_attrs(dict(zarr.open_group(str(run_dir / "store.zarr"), mode="r").attrs)), run_dir

"""jobs/summarize_stores.py under real MPI ranks: the table equals the stores' contents."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr
from conftest import BIN, CONFIG, REPO, tiny

from insr_hpc.cli import main


def test_summarize_stores_with_two_mpi_ranks(tmp_path):
    mpiexec = os.path.join(BIN, "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec not found next to python (pip install mpich)")
    # 3 runs in this process (no worker start-up), one of them left partial.
    for seed in range(3):
        assert main(["run", CONFIG, *tiny(str(tmp_path), f"seed={seed}", f"name=adv{seed}", steps=1)]) == 0
    sweep = str(tmp_path)
    partial_path = os.path.join(sweep, "adv2", "r000", "store.zarr")
    partial = xr.open_zarr(partial_path)
    # un-commit the last step of one run: the summary must count 1 step there
    zarr.open_group(partial_path, mode="r+")["committed"][1] = 0
    out = subprocess.run(
        [mpiexec, "-n", "2", sys.executable, os.path.join(REPO, "jobs", "summarize_stores.py"), sweep],
        capture_output=True, text=True, timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    with open(os.path.join(sweep, "summary.csv"), encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == ["adv0/r000", "adv1/r000", "adv2/r000"]
    assert {r["rank"] for r in rows} == {"0", "1"}  # both ranks did work
    assert [int(r["steps_done"]) for r in rows] == [2, 2, 1]
    for row in rows:
        ds = xr.open_zarr(os.path.join(sweep, row["run"], "store.zarr"))
        n = int(row["steps_done"])
        assert float(row["final_error"]) == pytest.approx(float(ds["rel_l2"].values[n - 1]), rel=1e-12)
        assert int(row["iterations"]) == int(ds["iterations"].values[:n].clip(min=0).sum())
    assert float(rows[2]["final_error"]) == pytest.approx(float(partial["rel_l2"].values[0]), rel=1e-12)
    assert np.isfinite([float(r["max_error"]) for r in rows]).all()

"""Nothing under-converged looks converged: a sub-problem whose optimiser stopped at its
iteration cap is recorded as such in the store (``capped``), the run's summary and
store attributes (``capped_substeps``), ``insr-hpc status`` and the report; a store
from before the ``capped`` variable still resumes, shows and reports (as unknown)."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import xarray as xr
import zarr
from conftest import CONFIG, tiny

from insr_hpc.analysis.status import format_table, run_status
from insr_hpc.cli import main
from insr_hpc.pde import workload

STEPS = 4
# Step 0 stops by its window rule at iteration 2 (a window of 1 iteration that never
# improves by 1e9 × itself); steps ≥ 1 have no rule that can fire (rtol 0, tol 1e-9
# unreachable in 3 Adam iterations) and stop at their cap of 3.
CAPPED = ("optim.max_iters=3", "optim.rtol=0", "optim.init_max_iters=50", "optim.init_rtol=1e9",
          "optim.window=1", "optim.patience=1", "guard.max_error=0")
# tol far above any loss here: every sub-problem stops by its rule after one iteration
LOOSE = ("optim.tol=1e3", "guard.max_error=0")


def _run(root: str, *extra: str) -> str:
    assert main(["run", CONFIG, *tiny(root, *extra, steps=STEPS)]) == 0
    return os.path.join(root, "advection", "r000")


def _summary_rows(root: str) -> dict[str, dict[str, str]]:
    assert main(["report", root, "--no-figures"]) == 0
    with open(os.path.join(root, "report", "summary.csv"), encoding="utf-8") as fh:
        return {row["run"]: row for row in csv.DictReader(fh)}


def _status_row(root: str, capsys) -> str:
    capsys.readouterr()
    assert main(["status", root]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["run", "state", "steps", "capped"]
    return [line for line in out.splitlines() if line.startswith("r000")][0]


def test_steps_stopped_at_their_cap_are_recorded_everywhere(tmp_path, capsys):
    root = str(tmp_path / "runs")
    run_dir = _run(root, *CAPPED)
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    assert ds.capped.dims == ("step", "substep") and ds.capped.dtype == np.int8
    assert ds.capped.attrs["flag_values"] == [-1, 0, 1]
    assert ds.capped.attrs["flag_meanings"] == "not_run converged_by_rule stopped_at_cap"
    assert list(ds.substep.values) == ["fit", "advance"]
    flags = ds.capped.values
    iters = ds.iterations.values
    # step 0: fit stopped by its rule at iteration 2; advance does not occur
    assert flags[0].tolist() == [0, -1] and iters[0].tolist() == [2, -1]
    # every later step: advance ran its 3 iterations and stopped at the cap; fit does not occur
    assert flags[1:].tolist() == [[-1, 1]] * STEPS and iters[1:, 1].tolist() == [3] * STEPS
    assert ds.attrs["capped_substeps"] == STEPS
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as fh:
        assert json.load(fh)["summary"]["capped_substeps"] == STEPS

    st = run_status(run_dir)
    assert st["capped"] == (STEPS, STEPS + 1)  # capped / sub-problems run
    row = _status_row(root, capsys)
    assert row.split()[1:5] == ["done", "(capped", f"{STEPS})", f"{STEPS + 1}/{STEPS + 1}"], row
    assert f" {STEPS}/{STEPS + 1} " in row, row

    rows = _summary_rows(root)
    assert rows["advection/r000"]["capped_substeps"] == str(STEPS)
    sweep = xr.open_zarr(os.path.join(root, "report", "sweep.zarr"))
    assert sweep.capped.dims == ("run", "step")
    np.testing.assert_array_equal(sweep.capped.sel(run="advection/r000").values, [0] + [1] * STEPS)
    assert float(sweep.capped_substeps.sel(run="advection/r000")) == STEPS


def test_sub_problems_stopped_by_their_rule_are_not_capped(tmp_path, capsys):
    root = str(tmp_path / "runs")
    run_dir = _run(root, *LOOSE)
    ds = xr.open_zarr(os.path.join(run_dir, "store.zarr"))
    iters, flags = ds.iterations.values, ds.capped.values
    assert iters[0].tolist() == [1, -1] and iters[1:, 1].tolist() == [1] * STEPS  # tol fired at once
    assert flags[0].tolist() == [0, -1] and flags[1:].tolist() == [[-1, 0]] * STEPS
    assert ds.attrs["capped_substeps"] == 0
    assert run_status(run_dir)["capped"] == (0, STEPS + 1)
    row = _status_row(root, capsys)
    assert row.split()[1:4] == ["done", f"{STEPS + 1}/{STEPS + 1}", f"0/{STEPS + 1}"], row
    assert _summary_rows(root)["advection/r000"]["capped_substeps"] == "0"


def test_a_store_from_before_capped_resumes_shows_and_reports_as_unknown(tmp_path, capsys, monkeypatch):
    root = str(tmp_path / "runs")
    old = workload.store_variables

    def without_capped(solver):
        variables = old(solver)
        del variables["capped"]
        return variables

    monkeypatch.setattr(workload, "store_variables", without_capped)
    run_dir = _run(root, *CAPPED)
    monkeypatch.undo()
    path = os.path.join(run_dir, "store.zarr")
    group = zarr.open_group(path, mode="r+")
    assert "capped" not in group and "capped_substeps" not in group.attrs
    group["committed"][2:] = 0  # interrupted after step 1: resumed by today's code
    group.attrs.update({"complete": False})
    zarr.consolidate_metadata(path)
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as fh:
        state = json.load(fh)
    with open(os.path.join(run_dir, "run.json"), "w", encoding="utf-8") as fh:
        json.dump({**state, "state": "pending"}, fh)

    assert main(["run", CONFIG, *tiny(root, *CAPPED, steps=STEPS)]) == 0
    ds = xr.open_zarr(path)
    assert int(ds.committed.sum()) == STEPS + 1 and ds.attrs["complete"] == 1  # 0/1: netCDF has no boolean attribute
    assert "capped" not in ds and "capped_substeps" not in ds.attrs  # unknown, not "0"
    assert run_status(run_dir)["capped"] is None
    row = _status_row(root, capsys)
    assert row.split()[1:4] == ["done", f"{STEPS + 1}/{STEPS + 1}", "-"], row
    rows = _summary_rows(root)
    assert rows["advection/r000"]["capped_substeps"] == ""  # unknown
    sweep = xr.open_zarr(os.path.join(root, "report", "sweep.zarr"))
    assert np.isnan(float(sweep.capped_substeps.sel(run="advection/r000")))


def test_status_table_marks_a_done_run_with_capped_sub_problems():
    base = {"run_id": "r", "steps_done": 3, "steps_total": 3, "last_loss": 0.1, "last_error": None}
    table = format_table([{**base, "state": "done", "capped": (2, 5)}, {**base, "run_id": "s", "state": "done",
                                                                          "capped": (0, 5)}])
    lines = table.splitlines()
    assert lines[1].split()[:5] == ["r", "done", "(capped", "2)", "3/3"] and " 2/5 " in lines[1]
    assert lines[2].split()[:4] == ["s", "done", "3/3", "0/5"]


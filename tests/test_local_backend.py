"""``insr-hpc submit`` on the local backend: a sweep in parallel worker processes,
failures isolated and reported, exit codes, re-submission skipping finished runs."""

from __future__ import annotations

import json
import os

import xarray as xr

from insr_hpc.store import decode_attrs
from _small import SMALL_ADVECTION, cli, write_config


def test_sweep_runs_in_workers_and_reports_a_failed_run(tmp_path):
    root = tmp_path / "runs"
    data = dict(
        SMALL_ADVECTION,
        name="sw",
        time={"dt": 0.05, "steps": 2},
        optim={**SMALL_ADVECTION["optim"], "init_max_iters": 100, "max_iters": 30},
        output={"root": str(root), "resolution": 32},
        launch={"workers": 2},
        # the second zip row asks for a device that does not exist: that run alone fails
        sweep={"grid": {"time.dt": [0.05, 0.1]}, "zip": {"device": ["cpu", "cuda:7"]}},
    )
    cfg = write_config(tmp_path, data)
    dry = cli("submit", cfg, "--dry-run")
    assert dry.returncode == 0 and "4 run(s) on backend 'local'" in dry.stdout
    assert not root.exists()

    res = cli("submit", cfg)
    assert res.returncode == 1, res.stderr  # some runs failed
    runs = sorted(os.listdir(root / "sw"))
    assert len(runs) == 4
    states = {r: json.load(open(root / "sw" / r / "run.json")) for r in runs}
    ok = [r for r, s in states.items() if "cpu" in r]
    bad = [r for r, s in states.items() if "cuda" in r]
    assert len(ok) == 2 and len(bad) == 2
    for r in ok:
        assert states[r]["state"] == "done" and states[r]["backend"] == "local"
        ds = xr.open_zarr(root / "sw" / r / "store.zarr")
        ds.attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store
        assert int(ds.committed.sum()) == 3
        assert float(ds.time[-1]) == 2 * ds.attrs["config"]["time"]["dt"]
        # a worker's stdout is a file: plain progress lines, one per step here, as the run goes
        log = open(root / "sw" / r / "log.txt").read()
        assert [f"{r} step {k}/2 " in log for k in range(3)] == [True] * 3, log
        assert "Warning" not in log, log  # e.g. runpy's about a worker module imported twice
    for r in bad:
        assert states[r]["state"] == "failed" and "CUDA is not available" in states[r]["reason"]

    status = cli("status", str(root))
    assert status.returncode == 1
    table, totals = status.stdout.splitlines()[1:-1], status.stdout.splitlines()[-1]
    assert [row.split()[1] for row in table].count("done") == 2 and [row.split()[1] for row in table].count("failed") == 2
    assert totals.startswith("4 runs: 2 done, 2 failed; steps 6/6")

    # submitting again runs only the unfinished runs (they fail again); done ones are skipped
    again = cli("submit", cfg)
    assert again.returncode == 1 and "2 run(s) already done, skipped" in again.stdout

"""A run killed with SIGKILL and started again ends bitwise equal to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
from _small import REPO, SMALL_ADVECTION, cli, committed_steps, write_config


_committed = committed_steps


OPTIMISERS = {
    "adam": SMALL_ADVECTION["optim"],
    "gauss_newton": {"name": "gauss_newton", "max_iters": 3, "init_max_iters": 5, "init_warmup": 50},
    "lbfgs": {"name": "lbfgs", "max_iters": 20, "init_max_iters": 60},
}


def _data_mtime(store: str, name: str) -> float:
    """Newest modification time among the chunk / shard files of array ``name``."""
    files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(store, name, "c")) for f in fs]
    assert files, f"no data files under {store}/{name}"
    return max(os.path.getmtime(f) for f in files)


# Adam in every CI run; the other optimisers' resume paths are the same code (marked slow)
@pytest.mark.parametrize("optimiser", [o if o == "adam" else pytest.param(o, marks=pytest.mark.slow) for o in sorted(OPTIMISERS)])
def test_resume_after_sigkill_matches_uninterrupted(tmp_path, optimiser):
    base = dict(SMALL_ADVECTION, time={"dt": 0.05, "steps": 10}, optim=OPTIMISERS[optimiser])
    ref_cfg = write_config(tmp_path, dict(base, output={**base["output"], "root": str(tmp_path / "ref")}), "ref.yaml")
    cut_cfg = write_config(tmp_path, dict(base, output={**base["output"], "root": str(tmp_path / "cut")}), "cut.yaml")
    store = str(tmp_path / "cut" / "adv" / "r000" / "store.zarr")

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    # the uninterrupted reference, as `cli("run", ref_cfg)` would run it, alongside (2 cores)
    ref_proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", ref_cfg], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", cut_cfg], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while _committed(store) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _committed(store)
    assert 4 <= killed_at < 11, killed_at

    # the interrupted store: committed steps complete, later ones untouched (NaN)
    ds = xr.open_zarr(store)
    done = ds.committed.values.astype(bool)
    assert np.isfinite(ds.weights.values[done]).all()
    assert np.isnan(ds.weights.values[~done][1:]).all()  # at most the step in flight was partly written
    status = cli("status", str(tmp_path / "cut"))
    assert "failed" in status.stdout and "gone" in status.stdout

    assert cli("run", cut_cfg).returncode == 0
    ref_out, _ = ref_proc.communicate(timeout=600)
    assert ref_proc.returncode == 0, ref_out[-3000:]
    cut = xr.open_zarr(store)
    ref = xr.open_zarr(str(tmp_path / "ref" / "adv" / "r000" / "store.zarr"))
    assert int(cut.committed.sum()) == 11
    np.testing.assert_array_equal(cut.weights.values, ref.weights.values)
    np.testing.assert_array_equal(cut.field.values, ref.field.values)

    # a finished run is skipped: running it again changes nothing
    before = _data_mtime(store, "weights")
    assert cli("run", cut_cfg).returncode == 0
    assert _data_mtime(store, "weights") == before


def test_resume_refuses_a_changed_config(tmp_path):
    cfg = write_config(tmp_path, dict(SMALL_ADVECTION, time={"dt": 0.05, "steps": 1},
                                      output={"root": str(tmp_path / "o"), "resolution": 32}))
    assert cli("run", cfg, "optim.init_max_iters=50").returncode == 0
    res = cli("run", cfg, "optim.init_max_iters=50", "network.width=24")
    assert res.returncode == 2
    assert "network.width=20" in res.stderr and "network.width=24" in res.stderr


def test_overwrite_restarts_once_at_submission_never_on_requeue(tmp_path):
    from insr_hpc.run import RunSpec, execute

    cfg = write_config(tmp_path, dict(SMALL_ADVECTION, time={"dt": 0.05, "steps": 1},
                                      output={"root": str(tmp_path / "o"), "resolution": 32}))
    run_dir = tmp_path / "o" / "adv" / "r000"
    assert cli("run", cfg, "optim.init_max_iters=50").returncode == 0
    created = xr.open_zarr(run_dir / "store.zarr").attrs["created"]
    store = str(run_dir / "store.zarr")
    first = _data_mtime(store, "weights")
    time.sleep(1.1)  # `created` has one-second resolution
    # the command clears the outputs once and the run starts from step 0
    assert cli("run", cfg, "optim.init_max_iters=50", "output.overwrite=true").returncode == 0
    assert xr.open_zarr(run_dir / "store.zarr").attrs["created"] != created
    second = _data_mtime(store, "weights")
    assert second > first
    # executing the saved spec again (what a requeued job does) resumes: nothing is recomputed
    spec = RunSpec.load(str(run_dir / "spec.json"))
    assert spec.config["output"]["overwrite"] is True
    execute(spec, threads=1)
    assert _data_mtime(store, "weights") == second

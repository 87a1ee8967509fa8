"""One owner of a run's lifecycle: a config validated once (at plan time) and sealed by
its digest, spec.json written once per submit by RunDir, unrecorded ends settled in one
place, backends that only submit, report and cancel (a new one is one class and one
registry line), and a run directory that cannot be turned against its owner (links,
damaged or lost run files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import xarray as xr
from _small import REPO, SMALL_ADVECTION, cli, write_config

from insr_hpc.cli import main
from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.launch.base import BACKENDS, Backend
from insr_hpc.plan import plan_runs
from insr_hpc.run import admit, execute, spec_config
from insr_hpc.rundir import RunDir, RunSpec, config_digest
from insr_hpc.store import decode_attrs

STEPS = 3
QUICK = dict(
    SMALL_ADVECTION,
    name="life",
    time={"dt": 0.05, "steps": STEPS},
    network={"model": "siren", "depth": 2, "width": 8},
    optim={"name": "adam", "lr": 1e-3, "max_iters": 10, "init_max_iters": 20, "rtol": 0, "init_rtol": 0},
    sampling={"interior": 64, "boundary": 2},
    output={"resolution": 32, "figure_every": 0},
)


def _cfg(tmp_path, root, file: str = "cfg.yaml", **extra) -> str:
    return write_config(tmp_path, dict(QUICK, output={**QUICK["output"], "root": str(root)}, **extra), file)


# -- validated once ------------------------------------------------------------------------------
def test_a_planned_spec_is_sealed_and_never_validated_again(tmp_path, monkeypatch):
    plan = plan_runs(_cfg(tmp_path, tmp_path / "runs"))
    spec = plan.specs[0]
    assert spec.digest == config_digest(spec.config) and spec.validated
    assert spec_config(spec) is plan.configs[0]  # this process: the plan's own object
    admit(plan.specs, backend=None)
    loaded = RunSpec.load(RunDir(spec.run_dir).spec)
    assert loaded.to_json() == json.loads(json.dumps(spec.to_json()))

    import insr_hpc.config.load as load

    def no_second_validation(*args, **kwargs):
        raise AssertionError("a sealed spec was validated again")

    monkeypatch.setattr(load, "check_config", no_second_validation)
    cfg = spec_config(loaded)  # another process would do exactly this: decode only
    assert cfg.network.width == 8 and cfg.time.steps == STEPS


def test_an_edited_spec_is_validated_before_it_runs(tmp_path):
    plan = plan_runs(_cfg(tmp_path, tmp_path / "runs"))
    admit(plan.specs, backend=None)
    path = RunDir(plan.specs[0].run_dir).spec
    data = json.load(open(path))
    data["config"]["time"]["dt"] = -1.0  # the digest no longer matches: validated again, refused
    json.dump(data, open(path, "w"))
    edited = RunSpec.load(path)
    assert not edited.validated
    with pytest.raises(ConfigError, match="time.dt"):
        spec_config(edited)


@pytest.mark.parametrize("text", ["", "{\"run_id\": 1", "\xff\xfe garbage", "[1, 2]", "{\"run_id\": \"r\"}"])
def test_a_damaged_spec_json_is_one_line_exit_2_from_the_worker(tmp_path, text):
    run_dir = tmp_path / "r000"
    run_dir.mkdir()
    (run_dir / "spec.json").write_bytes(text.encode("latin-1"))
    res = subprocess.run([sys.executable, "-m", "insr_hpc.launch.worker", str(run_dir / "spec.json")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=120)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("insr-hpc: error: ") and str(run_dir / "spec.json") in line
    assert sorted(os.listdir(run_dir)) == ["spec.json"]  # nothing written


# -- written once, settled in one place ----------------------------------------------------------
def test_settle_keeps_a_recorded_outcome_and_decides_an_unrecorded_one(tmp_path):
    rd = RunDir(str(tmp_path / "r"))
    rd.transition("running")
    assert rd.settle("worker exited with code -9 (killed by signal)") == "failed"
    assert rd.read_state()["reason"] == "worker exited with code -9 (killed by signal)"
    rd.transition("running")
    rd.transition("done")
    assert rd.settle("worker exited with code 1") == "done"  # the run's own record stands
    rd.transition("running")
    rd.request_cancel()
    assert rd.cancel_requested()
    assert rd.settle("gone", cancelled="cancelled by user (scancel)") == "cancelled"
    assert rd.read_state()["reason"] == "cancelled by user (scancel)"
    rd.transition("pending")
    rd.update(cancel_requested=False)
    assert rd.settle("never started") == "pending"  # a queued run is not settled by default
    assert rd.settle("job left the queue", unfinished=("pending",)) == "failed"
    rd.transition("running")
    assert rd.settle("killed", stopping="interrupted: submit stopped") == "pending"


class InProcess(Backend):
    """A whole backend in a test: runs each spec in this process."""

    name = "inprocess"

    def available(self, detach: bool = False) -> None:
        if detach:
            raise InsrError("--no-wait: backend 'inprocess' cannot detach")

    def submit(self, specs, sweep_dir, progress=True, wait=True):
        written = {s.run_id: os.stat(RunDir(s.run_dir).spec).st_mtime_ns for s in specs}
        out = {}
        for spec in specs:
            execute(spec, threads=1, job={"backend": self.name, "job_id": f"job-{spec.run_id}"})
            out[spec.run_id] = RunDir(spec.run_dir).read_state()["state"]
        assert written == {s.run_id: os.stat(RunDir(s.run_dir).spec).st_mtime_ns for s in specs}  # not rewritten
        return out

    def states(self, runs):
        return {st["run_id"]: "COMPLETED" for st in runs}

    def cancel(self, runs):
        for st in runs:
            RunDir(st["run_dir"]).request_cancel()
        return [st["run_id"] for st in runs]


def test_a_new_backend_is_one_class_and_one_registry_line(tmp_path, capsys):
    BACKENDS.register("inprocess")(InProcess)  # the one line a new backend module adds
    try:
        cfg = _cfg(tmp_path, tmp_path / "runs", sweep={"grid": {"seed": [0, 1]}})
        assert main(["submit", cfg, "--backend", "inprocess"]) == 0
        for run in ("r000-seed=0", "r001-seed=1"):
            state = RunDir(str(tmp_path / "runs" / "life" / run)).read_state()
            assert state["state"] == "done" and state["backend"] == "inprocess" and state["job_id"] == f"job-{run}"
            assert state["attempts"] == 1
        capsys.readouterr()
        assert main(["submit", cfg, "--backend", "inprocess", "--no-wait"]) == 2
        assert "backend 'inprocess' cannot detach" in capsys.readouterr().err
    finally:
        BACKENDS._entries.pop("inprocess")


def test_a_backend_missing_a_method_cannot_be_made():
    class Half(Backend):
        def available(self, detach=False):
            pass

        def submit(self, specs, sweep_dir, progress=True, wait=True):
            return {}

    with pytest.raises(TypeError, match="cancel"):
        Half(None)


def test_submit_writes_spec_once_and_run_state_three_times(tmp_path):
    """The counts the lifecycle promises, read from the files' own history: spec.json
    written once by submit (never by the backend or the worker), run.json written by
    admit (pending), execute (running) and execute (done)."""
    cfg = _cfg(tmp_path, tmp_path / "runs")
    tracer = tmp_path / "trace"
    tracer.mkdir()
    (tracer / "sitecustomize.py").write_text(
        "import os, sys\n"
        "log = os.environ['TRACE_LOG']\n"
        "def hook(event, args):\n"
        "    if event == 'os.rename':\n"
        "        with open(log, 'a') as fh:\n"
        "            fh.write(os.path.basename(os.fsdecode(args[1])) + '\\n')\n"
        "sys.addaudithook(hook)\n")
    env = dict(os.environ, PYTHONPATH=f"{tracer}{os.pathsep}{REPO}", TRACE_LOG=str(tmp_path / "writes.txt"))
    res = subprocess.run([sys.executable, "-m", "insr_hpc", "submit", cfg], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    writes = (tmp_path / "writes.txt").read_text().split()
    assert writes.count("spec.json") == 1
    assert writes.count("run.json") == 3
    state = RunDir(str(tmp_path / "runs" / "life" / "r000")).read_state()
    # the job id is the worker's own (written by the process that held the run's lock)
    assert state["backend"] == "local" and state["job_id"] == str(state["pid"]) and state["attempts"] == 1


# -- a run directory that cannot be turned against its owner --------------------------------------
def test_a_symlinked_store_is_refused_and_overwrite_never_deletes_through_it(tmp_path, capsys):
    cfg = _cfg(tmp_path, tmp_path / "runs")
    assert main(["submit", cfg]) == 0
    run_dir = tmp_path / "runs" / "life" / "r000"
    elsewhere = tmp_path / "precious"
    (run_dir / "store.zarr").rename(elsewhere)
    os.symlink(elsewhere, run_dir / "store.zarr")
    before = sorted(os.listdir(elsewhere))
    capsys.readouterr()
    for extra in ([], ["output.overwrite=true"]):
        assert main(["submit", cfg, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "symbolic link" in err and str(run_dir / "store.zarr") in err
        assert sorted(os.listdir(elsewhere)) == before


def test_a_symlinked_run_directory_is_refused(tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs" / "life").mkdir(parents=True)
    os.symlink(outside, tmp_path / "runs" / "life" / "r000")
    assert main(["submit", _cfg(tmp_path, tmp_path / "runs")]) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert os.listdir(outside) == []


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isdir("/proc/self"), reason="needs root and /proc")
def test_an_output_root_root_cannot_write_is_refused_in_the_dry_run(tmp_path, capsys):
    assert main(["submit", _cfg(tmp_path, "/proc/insr-hpc-test"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("insr-hpc: error: output.root: cannot create '/proc/insr-hpc-test") and "not writable" in err


def test_a_done_run_with_a_damaged_spec_gets_it_back_on_submit(tmp_path, capsys):
    cfg = _cfg(tmp_path, tmp_path / "runs")
    assert main(["submit", cfg]) == 0
    rd = RunDir(str(tmp_path / "runs" / "life" / "r000"))
    good = json.load(open(rd.spec))
    with open(rd.spec, "w") as fh:
        fh.write("garbage")
    assert main(["submit", cfg]) == 0
    assert "1 run(s) already done, skipped" in capsys.readouterr().out
    assert json.load(open(rd.spec)) == good and rd.read_state()["state"] == "done"


def test_lost_run_files_are_restored_from_the_plan_and_nothing_is_recomputed(tmp_path):
    cfg = _cfg(tmp_path, tmp_path / "runs")
    assert main(["submit", cfg]) == 0
    rd = RunDir(str(tmp_path / "runs" / "life" / "r000"))
    seconds = xr.open_zarr(rd.store)["seconds"].values.copy()
    os.remove(rd.spec)
    os.remove(rd.state_file)
    res = cli("submit", cfg)
    assert res.returncode == 0, res.stderr
    assert rd.read_state()["state"] == "done" and os.path.exists(rd.spec)
    assert (xr.open_zarr(rd.store)["seconds"].values == seconds).all()  # every step kept, none recomputed


# -- one cancel protocol: asked through RunDir, seen by the run ----------------------------------
def test_cancel_on_the_local_backend_stops_the_running_run_and_the_queued_one_never_starts(tmp_path):
    slow = dict(time={"dt": 0.05, "steps": 40}, optim={**QUICK["optim"], "max_iters": 60},
                sampling={"interior": 256, "boundary": 2}, launch={"workers": 1},
                sweep={"grid": {"seed": [0, 1]}})
    cfg = _cfg(tmp_path, tmp_path / "runs", **slow)
    sweep = tmp_path / "runs" / "life"
    first, second = RunDir(str(sweep / "r000-seed=0")), RunDir(str(sweep / "r001-seed=1"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "submit", cfg], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        from conftest import wait_for

        wait_for(lambda: os.path.exists(first.store) and _steps(first) >= 2, 300, "the first run to commit steps")
        res = cli("cancel", str(sweep))
        assert res.returncode == 0 and "cancelled 2 run(s)" in res.stdout, res.stdout + res.stderr
        out, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1, out  # the submit reports its runs as not done
    a, b = first.read_state(), second.read_state()
    assert a["state"] == "cancelled" and a["reason"] == "cancelled by user", a
    kept = _steps(first)
    assert 2 <= kept < 41  # stopped at a step boundary, what it committed kept
    assert b["state"] == "cancelled" and not os.path.exists(second.store)  # never started
    # submitted again, both run: the first resumes after its last committed step
    seconds = xr.open_zarr(first.store)["seconds"].values[:kept].copy()
    assert main(["submit", cfg]) == 0
    assert first.read_state()["state"] == second.read_state()["state"] == "done"
    assert (xr.open_zarr(first.store)["seconds"].values[:kept] == seconds).all()


def _steps(rd: RunDir) -> int:
    from insr_hpc.store import StepStore

    try:
        return StepStore.open(rd.store, mode="r").completed_steps()
    except Exception:
        return 0


# -- extend a run: time.steps may grow ---------------------------------------------------------
def _arrays(store: str) -> dict:
    ds = xr.open_zarr(store)
    return {n: ds[n].values for n in ds.variables if n not in ("seconds", "checksum")}  # wall times differ


def test_extending_a_finished_run_equals_the_longer_run_bitwise(tmp_path, capsys):
    import numpy as np

    short = _cfg(tmp_path, tmp_path / "ext", "short.yaml", name="ext")
    assert main(["submit", short, "time.steps=5"]) == 0
    rd = RunDir(str(tmp_path / "ext" / "ext" / "r000"))
    before = xr.open_zarr(rd.store)["seconds"].values.copy()
    capsys.readouterr()
    assert main(["submit", short, "time.steps=8", "--dry-run"]) == 0
    assert "r000  extend 6 → 9 steps" in capsys.readouterr().out
    assert main(["submit", short, "time.steps=8"]) == 0
    assert rd.read_state()["state"] == "done"
    assert "extended from 5 to 8 steps" in open(rd.log).read()
    ds = xr.open_zarr(rd.store)
    assert ds["committed"].values.tolist() == [1] * 9
    np.testing.assert_array_equal(ds["seconds"].values[:6], before)  # steps 0-5 kept, not recomputed
    attrs = decode_attrs(ds.attrs)  # nested attributes are JSON text in the store (netCDF-ready)
    assert attrs["config"]["time"]["steps"] == 8 and "extended from 6 to 9 records" in attrs["history"][0]
    assert main(["verify", rd.store]) == 0
    # the same 8 steps made at once: equal, bit for bit, in every array but the wall times
    long = _cfg(tmp_path, tmp_path / "long", "long.yaml", name="ext")
    assert main(["submit", long, "time.steps=8"]) == 0
    ext, ref = _arrays(rd.store), _arrays(str(tmp_path / "long" / "ext" / "r000" / "store.zarr"))
    assert ext.keys() == ref.keys()
    for name in ref:
        np.testing.assert_array_equal(ext[name], ref[name], err_msg=name)
    capsys.readouterr()
    assert main(["submit", short, "time.steps=8", "--dry-run"]) == 0
    assert "r000  done" in capsys.readouterr().out


def test_a_conflict_shows_in_the_dry_run_and_exits_2_naming_the_key(tmp_path, capsys):
    cfg = _cfg(tmp_path, tmp_path / "runs")
    assert main(["submit", cfg]) == 0
    capsys.readouterr()
    assert main(["submit", cfg, "time.dt=0.1", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert "r000  conflict: time.dt differs (store: 0.05, this run: 0.1)" in out
    assert err.strip().count("\n") == 0 and "1 run(s) conflict with their stores (r000)" in err
    assert main(["submit", cfg, "time.steps=2", "--dry-run"]) == 2  # fewer steps: not a prefix run
    assert "time.steps differs (store: 3, this run: 2)" in capsys.readouterr().out
    assert main(["submit", cfg, "time.steps=2"]) == 2
    assert "time.steps may only grow" in capsys.readouterr().err


def test_an_extension_cut_short_by_a_crash_is_put_right(tmp_path):
    from insr_hpc.store import PRE_EXTEND, StepStore

    cfg = _cfg(tmp_path, tmp_path / "runs")
    assert main(["submit", cfg]) == 0
    rd = RunDir(str(tmp_path / "runs" / "life" / "r000"))
    os.replace(rd.store, rd.store + PRE_EXTEND)  # the moment between the two renames of an extension
    assert main(["submit", cfg, "time.steps=5"]) == 0
    assert not os.path.exists(rd.store + PRE_EXTEND)
    assert StepStore.open(rd.store, mode="r").completed_steps() == 6
    assert "the store before it was put back" in open(rd.log).read()

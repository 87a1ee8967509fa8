"""Fault injection: a run that diverges, damaged stores, concurrent submits, a refused
resume, signals and SIGKILL to ``submit``, a full disk. Each ends in the right state and,
resumed, equal (bitwise) to a run that was never disturbed."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr
import zarr
from _small import REPO, SMALL_ADVECTION, cli, write_config
from conftest import wait_for

from insr_hpc.cli import main
from insr_hpc.rundir import RunDir, pid_alive
from insr_hpc.store import StepStore

STEPS = 6
QUICK = dict(
    SMALL_ADVECTION,
    time={"dt": 0.05, "steps": STEPS},
    network={"model": "siren", "depth": 2, "width": 8},
    optim={"name": "adam", "lr": 1e-3, "max_iters": 15, "init_max_iters": 30, "rtol": 0, "init_rtol": 0},
    sampling={"interior": 64, "boundary": 2},
    output={"resolution": 32, "figure_every": 0},
)
# Slower steps (~0.1-0.3 s), so that a signal lands mid-run.
SLOW = dict(QUICK, time={"dt": 0.05, "steps": 24}, optim={**QUICK["optim"], "max_iters": 50}, sampling={"interior": 256, "boundary": 2})


def _cfg(tmp_path, base: dict, root: str, name: str = "cfg.yaml", **extra) -> str:
    data = dict(base, output={**base["output"], "root": str(root)}, **extra)
    return write_config(tmp_path, data, name)


def _committed(run_dir) -> int:
    path = os.path.join(str(run_dir), "store.zarr")
    try:
        return StepStore.open(path, mode="r").completed_steps()
    except Exception:
        return 0


def _same(a: str, b: str, names=("weights", "field")) -> None:
    da, db = xr.open_zarr(a), xr.open_zarr(b)
    assert da.committed.values.tolist() == db.committed.values.tolist() == [1] * (STEPS + 1)
    for name in names:
        np.testing.assert_array_equal(da[name].values, db[name].values)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One undisturbed QUICK run (the answer every damaged-and-resumed run must give)."""
    tmp = tmp_path_factory.mktemp("ref")
    cfg = _cfg(tmp, QUICK, tmp / "runs")
    assert main(["run", cfg]) == 0
    return cfg, str(tmp / "runs" / "adv" / "r000")


# -- divergence -------------------------------------------------------------------------
def test_divergent_runs_fail_naming_the_step_and_the_sweep_goes_on(tmp_path, capsys):
    cfg = _cfg(tmp_path, QUICK, tmp_path / "runs", integrator={"name": "explicit_euler"}, time={"dt": 0.05, "steps": 2},
               launch={"workers": 1},
               sweep={"zip": {"time.dt": [0.05, 1e20, 0.05], "guard.max_error": [10.0, 10.0, 1e-9]}})
    assert main(["submit", cfg]) == 1
    runs = sorted(os.listdir(tmp_path / "runs" / "adv"))
    states = [RunDir(tmp_path / "runs" / "adv" / r).read_state() for r in runs]
    assert [s["state"] for s in states] == ["done", "failed", "failed"]
    blown, strict = states[1]["reason"], states[2]["reason"]
    assert "DivergenceError: step 1, sub-problem 'advance'" in blown, blown
    assert "non-finite" in blown or "exceeds guard.max_error=10" in blown, blown
    assert "step 0, sub-problem 'fit'" in strict and "exceeds guard.max_error=1e-09" in strict, strict
    for run, st in zip(runs[1:], states[1:], strict=True):  # the store says so too; the bad step is not committed
        store = StepStore.open(str(tmp_path / "runs" / "adv" / run / "store.zarr"), mode="r")
        assert store.attrs["failure"] == st["reason"] and not store.attrs["complete"]
    assert StepStore.open(str(tmp_path / "runs" / "adv" / runs[1] / "store.zarr"), mode="r").completed_steps() == 1
    capsys.readouterr()
    assert main(["status", str(tmp_path / "runs")]) == 1
    out = capsys.readouterr().out
    assert blown in out and strict in out


# -- damaged stores -----------------------------------------------------------------------
def _chunk(store: str, name: str) -> str:
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(store, name, "c")) for f in fs)
    assert files, (store, name)
    return files[-1]


def _delete(store):
    os.remove(_chunk(store, "field"))
    return 0


def _truncate(store):
    open(_chunk(store, "weights"), "w").close()
    return 0


def _flip(store):
    path = _chunk(store, "loss")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(path, "wb").write(bytes(data))
    return 0


def _wrong_value(store):  # a valid chunk holding a value that is not what step 3 computed
    arr = zarr.open_group(store, mode="r+")["rel_l2"]
    arr[3] = float(arr[3]) * 1.5
    return 3


def _garble_marker(store):
    open(_chunk(store, "committed"), "wb").write(b"\x28\xb5\x2f\xfd garbage")
    return 0


@pytest.mark.parametrize("damage", [_delete, _truncate, _flip, _wrong_value, _garble_marker],
                         ids=["missing-chunk", "truncated-chunk", "flipped-bit", "wrong-value", "garbled-marker"])
def test_damaged_store_is_found_by_verify_and_recomputed_from_the_last_intact_step(tmp_path, reference, damage, capsys):
    cfg, ref_dir = reference
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(ref_dir)), root)
    run_dir = root / "adv" / "r000"
    store = str(run_dir / "store.zarr")
    seconds = np.asarray(zarr.open_group(store, mode="r")["seconds"][:])
    first_bad = damage(store)

    capsys.readouterr()
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED: {store}" in out and "1 damaged" in out
    assert RunDir(run_dir).read_state()["state"] == "failed"  # no longer passes for done
    assert "store damaged" in RunDir(run_dir).read_state()["reason"]

    # the spec names the reference's root: resume this copy in place through its spec
    spec = json.load(open(run_dir / "spec.json"))
    spec["run_dir"] = str(run_dir)
    spec["config"]["output"]["root"] = str(root)
    json.dump(spec, open(run_dir / "spec.json", "w"))
    res = subprocess.run([sys.executable, "-m", "insr_hpc.launch.worker", str(run_dir / "spec.json")],
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"store verification: step {first_bad} of '{store}' is not intact" in res.stdout
    assert RunDir(run_dir).read_state()["state"] == "done"
    _same(store, os.path.join(ref_dir, "store.zarr"))
    after = np.asarray(zarr.open_group(store, mode="r")["seconds"][:])
    np.testing.assert_array_equal(after[:first_bad], seconds[:first_bad])  # intact steps were not recomputed
    assert not np.array_equal(after[first_bad:], seconds[first_bad:])  # the rest were
    assert main(["verify", store]) == 0


def test_unreadable_store_metadata_is_one_line_naming_the_store(tmp_path, reference):
    cfg, ref_dir = reference
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(ref_dir)), root)
    store = root / "adv" / "r000" / "store.zarr"
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    res = cli("run", _cfg(tmp_path, QUICK, root))
    assert res.returncode == 2
    line = res.stderr.strip()
    assert line.count("\n") == 0 and line.startswith("insr-hpc: error: store '") and "zarr.json is not valid JSON" in line
    assert str(store) in line
    ver = cli("verify", str(store))
    assert ver.returncode == 1 and f"DAMAGED: store '{store}'" in ver.stdout and "Traceback" not in ver.stderr


def test_damaged_array_metadata_fails_the_done_run_and_resume_restores_it(tmp_path, reference, capsys):
    """A truncated ``weights/zarr.json`` (xr.open_zarr without consolidated metadata fails on
    it): verify names the file and fails the run; resuming restores it from the consolidated
    copy, whose sha256 matches the digest recorded at creation, and recomputes nothing."""
    cfg, ref_dir = reference
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(ref_dir)), root)
    run_dir = root / "adv" / "r000"
    store = str(run_dir / "store.zarr")
    meta = os.path.join(store, "weights", "zarr.json")
    open(meta, "w").write(open(meta).read()[:100])
    with pytest.raises(json.JSONDecodeError):
        xr.open_zarr(store, consolidated=False)
    capsys.readouterr()
    assert main(["verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"DAMAGED: {store}: 'weights/zarr.json': is not valid JSON" in out, out
    state = RunDir(run_dir).read_state()
    assert state["state"] == "failed" and "store damaged" in state["reason"] and "weights/zarr.json" in state["reason"]
    seconds = np.asarray(zarr.open_group(store, mode="r")["seconds"][:])
    res = cli("run", _cfg(tmp_path, QUICK, root))
    assert res.returncode == 0, res.stderr
    assert "restored 'weights/zarr.json' from the consolidated metadata; every committed step intact" in res.stdout
    assert RunDir(run_dir).read_state()["state"] == "done"
    _same(store, os.path.join(ref_dir, "store.zarr"))
    np.testing.assert_array_equal(np.asarray(zarr.open_group(store, mode="r")["seconds"][:]), seconds)  # nothing recomputed
    xr.open_zarr(store, consolidated=False)
    assert main(["verify", store]) == 0


# -- a refused resume changes nothing -------------------------------------------------------
def test_refused_resume_changes_nothing_on_disk(tmp_path, reference):
    cfg, ref_dir = reference
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(ref_dir)), root)
    run_dir = root / "adv" / "r000"
    before = {n: (run_dir / n).read_bytes() for n in ("spec.json", "run.json")}
    mine = _cfg(tmp_path, QUICK, root)
    for command in ("run", "submit"):
        res = cli(command, mine, "network.width=24")
        assert res.returncode == 2, res.stderr
        assert "network.width=8" in res.stderr and "network.width=24" in res.stderr
        assert {n: (run_dir / n).read_bytes() for n in before} == before


# -- one writer per run ---------------------------------------------------------------------
def test_concurrent_submits_compute_every_run_once(tmp_path):
    cfg = _cfg(tmp_path, QUICK, tmp_path / "runs", launch={"workers": 1}, sweep={"grid": {"seed": [0, 1, 2]}})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "insr_hpc", "submit", cfg]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "being computed by" in "".join(outs)  # one submit found the other computing
    sweep = tmp_path / "runs" / "adv"
    for run in sorted(os.listdir(sweep)):
        assert RunDir(sweep / run).read_state()["state"] == "done"
        log = (sweep / run / "log.txt").read_text()
        assert log.count(f"{run} step 0/{STEPS} ") == 1, log  # computed by exactly one worker
        acc = xr.open_zarr(sweep / run / "store.zarr")
        assert acc.committed.values.tolist() == [1] * (STEPS + 1)


def test_run_refuses_while_another_process_holds_the_lock_and_takes_over_a_dead_ones(tmp_path):
    cfg = _cfg(tmp_path, SLOW, tmp_path / "runs")
    run_dir = tmp_path / "runs" / "adv" / "r000"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    first = subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", cfg], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _committed(run_dir) >= 1, 300, "the first run to commit a step")
        res = cli("run", cfg)
        assert res.returncode == 2
        assert "is being computed by insr-hpc run r000 on host" in res.stderr and f"pid {first.pid}" in res.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    holder = json.loads((run_dir / "run.lock").read_text())
    assert holder["pid"] == first.pid  # the dead holder is still named in the lock file
    assert RunDir(run_dir).holder() is None  # but the kernel released the lock with its process
    res = cli("run", cfg)
    assert res.returncode == 0, res.stderr
    assert f"took over the lock of insr-hpc run r000 on host {holder['host']} pid {first.pid}, which has gone" in res.stdout


# -- signals and SIGKILL to submit ----------------------------------------------------------
def _start_submit(cfg: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-m", "insr_hpc", "submit", cfg], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def slow_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slowref")
    cfg = _cfg(tmp, SLOW, tmp / "runs")
    assert main(["run", cfg]) == 0
    return str(tmp / "runs" / "adv" / "r000" / "store.zarr")


def _same_slow(store: str, ref: str) -> None:
    da, db = xr.open_zarr(store), xr.open_zarr(ref)
    assert da.committed.values.all()
    np.testing.assert_array_equal(da.weights.values, db.weights.values)


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)], ids=["SIGTERM", "SIGINT"])
def test_signal_to_submit_stops_workers_at_a_step_and_resubmit_finishes(tmp_path, slow_reference, sig):
    cfg = _cfg(tmp_path, SLOW, tmp_path / "runs", launch={"workers": 1, "grace_s": 60},
               sweep={"grid": {"seed": [0, 1]}})
    sweep = tmp_path / "runs" / "adv"
    proc = _start_submit(cfg)
    first, second = sweep / "r000-seed=0", sweep / "r001-seed=1"
    wait_for(lambda: _committed(first) >= 2, 300, "the first run to commit 2 steps")
    worker = int(RunDir(first).read_state()["job_id"])
    t0 = time.time()
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, out
    assert time.time() - t0 < 60  # at the next step boundary, not after the grace period
    assert not pid_alive(worker)
    a, b = RunDir(first).read_state(), RunDir(second).read_state()
    assert a["state"] == "pending" and a["reason"].startswith(f"interrupted: stopped by {sig.name} after step"), a
    assert b["state"] == "pending" and "before the run started" in b["reason"]
    assert not os.path.exists(second / "store.zarr")  # nothing new was started
    assert 2 <= _committed(first) < 25
    res = cli("submit", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    _same_slow(str(first / "store.zarr"), slow_reference)


def test_sigkill_to_submit_at_random_moments_leaves_no_orphan_and_resumes_equal(tmp_path, slow_reference):
    rng = random.Random(12)
    cfg = _cfg(tmp_path, SLOW, tmp_path / "runs")
    run_dir = tmp_path / "runs" / "adv" / "r000"
    trials = []
    for _ in range(3):
        target = min(24, _committed(run_dir) + rng.randint(1, 5))
        proc = _start_submit(cfg)
        wait_for(lambda: _committed(run_dir) >= target or proc.poll() is not None, 300, "steps to commit")
        if proc.poll() is not None:
            break  # finished before the kill
        worker = int(RunDir(run_dir).read_state()["job_id"])
        time.sleep(rng.random() * 0.3)  # mid-step, at a random moment
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # the worker learns of its parent's death (PR_SET_PDEATHSIG) and stops at a step
        wait_for(lambda: not pid_alive(worker), 60, "the orphaned worker to stop")
        state = RunDir(run_dir).read_state()
        trials.append(state["state"] == "pending" and "interrupted" in state["reason"])
    assert trials and all(trials), trials
    res = cli("submit", cfg)
    assert res.returncode == 0, res.stdout + res.stderr
    _same_slow(str(run_dir / "store.zarr"), slow_reference)


# -- a full disk ------------------------------------------------------------------------------
def _small_tmpfs(path: str, size: str) -> str | None:
    os.makedirs(path, exist_ok=True)
    try:
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"cannot run mount: {exc}"
    if out.returncode != 0:
        return f"cannot mount a tmpfs here: {out.stderr.strip()[:160]}"
    return None


def test_disk_full_mid_run_fails_naming_the_path_and_resumes_once_space_is_back(tmp_path, slow_reference):
    mnt = str(tmp_path / "small")
    why = _small_tmpfs(mnt, "24m")
    if why:
        pytest.skip(why)
    try:
        cfg = _cfg(tmp_path, SLOW, mnt)
        run_dir = os.path.join(mnt, "adv", "r000")
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
        proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", cfg], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: _committed(run_dir) >= 2, 300, "two committed steps")
        ballast = os.path.join(mnt, "ballast")
        with open(ballast, "wb", buffering=0) as fh:  # fill the disk to the last byte (unbuffered: a
            try:  # partial last write leaves nothing for close() to flush into a full disk)
                while fh.write(b"\0" * 65536):
                    pass
            except OSError:
                pass
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 1, out
        state = RunDir(run_dir).read_state()
        assert state["state"] == "failed", state
        assert "No space left on device" in state["reason"] and mnt in state["reason"], state["reason"]
        os.remove(ballast)
        assert cli("run", cfg).returncode == 0
        _same_slow(os.path.join(run_dir, "store.zarr"), slow_reference)
    finally:
        subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)


# -- the reconstruction workload ------------------------------------------------------------
RECON = {
    "workload": "recon", "name": "rc", "seed": 3407, "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "task": {"name": "task3", "ratio": 0.05},
    "train": {"epochs": 8, "batch_steps": 40, "eval_every": 4, "checkpoint_every": 2},
    "network": {"model": "mmgn", "width": 32, "layers": 2, "latent": 8, "input_scale": 64.0},
    "output": {"figure_every": 0},
}
RECON_ARRAYS = ("loss", "val_mse", "reconstruction", "latent_code", "weights")


@pytest.fixture(scope="module")
def recon_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reconref")
    cfg = write_config(tmp, dict(RECON, output={**RECON["output"], "root": str(tmp / "runs")}))
    assert main(["run", cfg]) == 0
    return str(tmp / "runs" / "rc" / "r000")


def _same_recon(run_dir: str, ref_dir: str) -> None:
    a, b = xr.open_zarr(os.path.join(run_dir, "store.zarr")), xr.open_zarr(os.path.join(ref_dir, "store.zarr"))
    assert a.attrs["complete"] and a.committed.values.all()
    for name in RECON_ARRAYS:
        np.testing.assert_array_equal(a[name].values, b[name].values)


@pytest.mark.slow
def test_recon_sigkill_at_random_moments_resumes_equal(tmp_path, recon_reference):
    rng = random.Random(7)
    cfg = write_config(tmp_path, dict(RECON, output={**RECON["output"], "root": str(tmp_path / "runs")}))
    run_dir = tmp_path / "runs" / "rc" / "r000"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    kills = 0
    for _ in range(3):
        target = min(8, _committed(run_dir) + rng.randint(1, 3))
        proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "run", cfg], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _committed(run_dir) >= target or proc.poll() is not None, 300, "epochs to commit")
        time.sleep(rng.random() * 0.5)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2
    assert cli("run", cfg).returncode == 0
    _same_recon(str(run_dir), recon_reference)


def test_recon_damaged_final_results_and_epochs_are_recomputed(tmp_path, recon_reference):
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(recon_reference)), root)
    run_dir = root / "rc" / "r000"
    store = str(run_dir / "store.zarr")
    cfg = write_config(tmp_path, dict(RECON, output={**RECON["output"], "root": str(root)}))
    _flip_file(_chunk(store, "reconstruction"))  # a final result: rewritten from the checkpoint
    assert cli("verify", str(root)).returncode == 1
    res = cli("run", cfg)
    assert res.returncode == 0, res.stderr
    assert "store verification" in res.stdout
    _same_recon(str(run_dir), recon_reference)
    os.remove(_chunk(store, "loss"))  # every epoch's loss: the checkpoint is past it, train again
    assert cli("verify", str(root)).returncode == 1
    res = cli("run", cfg)
    assert res.returncode == 0, res.stderr
    assert "training again from epoch 1" in res.stdout
    _same_recon(str(run_dir), recon_reference)
    assert cli("verify", str(root)).returncode == 0


def _flip_file(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x40
    open(path, "wb").write(bytes(data))


def test_recon_checkpoint_is_tensors_and_plain_data_only(recon_reference):
    import torch

    state = torch.load(os.path.join(recon_reference, "checkpoint.pt"), weights_only=True)
    assert state["epoch"] == 8 and isinstance(state["torch_rng"], torch.Tensor)


class _Payload:
    """Unpickling this runs ``touch marker`` (what a hostile checkpoint.pt could do)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_recon_hostile_checkpoint_is_never_unpickled(tmp_path, recon_reference):
    import pickle

    import torch

    proof = tmp_path / "proof"  # the payload is live: plain unpickling runs it
    pickle.loads(pickle.dumps(_Payload(str(proof))))
    assert proof.exists()
    root = tmp_path / "runs"
    shutil.copytree(os.path.dirname(os.path.dirname(recon_reference)), root)
    run_dir = root / "rc" / "r000"
    store = StepStore.open(str(run_dir / "store.zarr"))
    store.group["committed"][5:] = 0  # killed after epoch 5: resumes from the checkpoint
    store.group["checksum"][5:] = 0
    store.mark_failed("killed")
    marker = tmp_path / "pwned"
    ckpt = str(run_dir / "checkpoint.pt")
    torch.save({"epoch": 4, "model": _Payload(str(marker))}, ckpt)
    res = cli("run", write_config(tmp_path, dict(RECON, output={**RECON["output"], "root": str(root)})))
    assert res.returncode == 0, res.stderr
    assert not marker.exists(), "the checkpoint was unpickled"
    line = next(ln for ln in res.stdout.splitlines() if "checkpoint" in ln)
    assert f"checkpoint '{ckpt}' is not a readable tensors-only checkpoint" in line and "training again from epoch 1" in line
    assert "posix.system" in line or "Unsupported global" in line, line
    assert RunDir(run_dir).read_state()["state"] == "done"
    _same_recon(str(run_dir), recon_reference)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 8  # replaced by a real one

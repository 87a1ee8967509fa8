"""Ray beyond one driver, on a real Ray cluster (``ray start --head`` on loopback, shared
by this module): detached sweeps through the job server, data-parallel gangs, the
capability checks of ``submit --backend ray``, and the join check of a cluster."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import xarray as xr
from conftest import CONFIG, REPO, tiny, wait_for

from insr_hpc.analysis.status import find_runs, run_status
from insr_hpc.cli import main
from insr_hpc.errors import InsrError
from insr_hpc.launch.ray_cluster import RayHead, RayPorts, job_client, processes_using, wait_for_nodes
from insr_hpc.run import read_state


@pytest.fixture(scope="module")
def head():
    """One Ray head (2 CPUs, dashboard and job server on) for the module; stopped after."""
    temp_dir = tempfile.mkdtemp(prefix="insr-ray-", dir="/tmp")  # short: Ray's socket paths are limited
    node = RayHead(RayPorts.free(), temp_dir, num_cpus=2)
    try:
        node.wait_ready()
        yield node
    finally:
        node.stop()
        assert processes_using(temp_dir) == []  # nothing of that cluster is left running
        shutil.rmtree(temp_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> np.ndarray:
    """Weights of the reference run in this process (seed 0, 128 samples, 1 thread)."""
    root = str(tmp_path_factory.mktemp("single"))
    assert main(["run", CONFIG, *tiny(root, "sampling.interior=128", "seed=0")]) == 0
    return _weights(os.path.join(root, "advection", "r000"))


def _weights(run_dir: str) -> np.ndarray:
    return xr.open_zarr(os.path.join(run_dir, "store.zarr"))["weights"].values


# -- capability checks: one line, exit 2, nothing created ----------------------------------


def _refused(tmp_path, *args: str, capsys) -> str:
    """``submit --backend ray ARGS``: exit 2, one error line, nothing written."""
    root = tmp_path / "out"
    overrides = [a for a in args if not a.startswith("--")]
    flags = [a for a in args if a.startswith("--")]
    capsys.readouterr()
    code = main(["submit", CONFIG, *tiny(str(root)), *overrides, "--backend", "ray", *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insr-hpc: error: "), err
    assert not root.exists()  # nothing written
    return lines[0]


def test_unreachable_address_is_refused_quickly(tmp_path, capsys):
    from insr_hpc.config.schema import LaunchConfig, RayConfig
    from insr_hpc.launch.ray import RayBackend

    port = _free_port()  # nothing listens there
    line = _refused(tmp_path, f"launch.ray.address=127.0.0.1:{port}", capsys=capsys)
    assert f"launch.ray.address: nothing answers at 127.0.0.1:{port} (Connection refused)" in line
    backend = RayBackend(LaunchConfig(ray=RayConfig(address=f"10.255.255.1:{port}")))  # unroutable: no answer
    start = time.time()
    with pytest.raises(InsrError, match=r"nothing answers at 10\.255\.255\.1"):
        backend.available()
    assert time.time() - start < 10  # a probe with a short timeout, not ray.init's long retries


def test_malformed_address_is_refused(tmp_path, capsys):
    line = _refused(tmp_path, "launch.ray.address=headnode", capsys=capsys)
    assert "launch.ray.address: expected host:port" in line


def test_no_wait_without_address_is_refused(tmp_path, capsys):
    line = _refused(tmp_path, "--no-wait", capsys=capsys)
    assert "--no-wait: the ray backend needs launch.ray.address" in line


def test_no_wait_on_the_local_backend_is_refused(tmp_path, capsys):
    root = tmp_path / "out"
    assert main(["submit", CONFIG, *tiny(str(root)), "--backend", "local", "--no-wait"]) == 2
    assert "insr-hpc: error: --no-wait: backend 'local' runs inside this process" in capsys.readouterr().err
    assert not root.exists()


def test_no_wait_without_job_server_is_refused(tmp_path, capsys):
    with socket.socket() as s:  # something answers TCP there, but it is no Ray head
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = _refused(tmp_path, f"launch.ray.address=127.0.0.1:{port}", "--no-wait", capsys=capsys)
    assert f"--no-wait: no Ray job server answers for launch.ray.address '127.0.0.1:{port}'" in line


def test_ray_not_installed_is_refused(tmp_path):
    root = tmp_path / "out"
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if ray were not installed: `import ray` fails
        "from insr_hpc.cli import main\n"
        f"raise SystemExit(main({['submit', CONFIG, *tiny(str(root)), '--backend', 'ray']!r}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == "insr-hpc: error: launch.backend: 'ray' needs ray (pip install 'insr-hpc[cluster]')"
    assert not root.exists()


def test_gang_that_cannot_fit_is_refused(head, tmp_path):
    overrides = tiny(str(tmp_path), "launch.ddp.nproc_per_node=3", "launch.ray.num_cpus=1",
                     f"launch.ray.address={head.address}")
    assert main(["submit", CONFIG, *overrides, "--backend", "ray"]) == 1
    state = read_state(os.path.join(tmp_path, "advection", "r000"))
    assert state["state"] == "failed"
    assert state["reason"].startswith("launch.ddp: 3 ranks × 1 CPU do not fit on one node of the Ray cluster (at most 2 CPU)")


# -- data-parallel runs as a gang ------------------------------------------------------------


def test_ddp_two_ranks_on_ray_match_one_process(head, single, tmp_path):
    overrides = tiny(str(tmp_path), "sampling.interior=128", "seed=0", "launch.ddp.nproc_per_node=2",
                     "launch.ray.num_cpus=1", f"launch.ray.address={head.address}")
    assert main(["submit", CONFIG, *overrides, "--backend", "ray"]) == 0
    state = read_state(os.path.join(tmp_path, "advection", "r000"))
    assert state["state"] == "done" and state["world_size"] == 2
    assert state["ray_gang"] == "2 ranks, STRICT_PACK" and state["attempts"] == 1
    weights = _weights(os.path.join(tmp_path, "advection", "r000"))
    assert np.abs(single[-1] - single[0]).max() > 1e-3  # training moved the weights
    np.testing.assert_allclose(weights, single, rtol=0, atol=1e-5)


# -- detached sweeps -------------------------------------------------------------------------


def _detach(tmp_path, head) -> subprocess.Popen:
    # As docs/cluster.md writes it: the address after the options.
    cmd = [sys.executable, "-m", "insr_hpc", "submit", CONFIG,
           *tiny(str(tmp_path / "runs"), "sweep.grid.seed=[0,1]", "sampling.interior=128", "launch.ray.num_cpus=1"),
           "--backend", "ray", "--no-wait", f"launch.ray.address={head.address}"]
    return subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _ray_job(run_dir: str) -> str | None:
    return read_state(run_dir).get("ray_job")


def test_detached_sweep_survives_submitter_sigkill(head, single, tmp_path, capsys):
    proc = _detach(tmp_path, head)
    sweep = str(tmp_path / "runs" / "advection")
    run0 = os.path.join(sweep, "r000-seed=0")
    sid = wait_for(lambda: os.path.exists(os.path.join(run0, "run.json")) and _ray_job(run0), 120, "the Ray job id")
    client = job_client(head.dashboard_url)

    def known():
        try:
            return client.get_job_status(sid)
        except Exception:
            return None

    wait_for(known, 60, "the job server to know the job")
    try:  # the submitting shell and everything it started go, at once
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(30)
    runs = find_runs(sweep)
    assert [os.path.basename(r) for r in runs] == ["r000-seed=0", "r001-seed=1"]
    wait_for(lambda: all(read_state(r).get("state") == "done" for r in runs), 300, "the detached sweep to finish")
    wait_for(lambda: client.get_job_status(sid).value == "SUCCEEDED", 60, "the Ray job to succeed")
    for r in runs:
        st = read_state(r)
        assert st["job_id"] == sid and st["backend"] == "ray" and st["attempts"] == 1
        assert xr.open_zarr(os.path.join(r, "store.zarr"))["committed"].values.tolist() == [1, 1, 1]
    # The cluster ran exactly what this process runs: same seed, same threads, same weights.
    np.testing.assert_allclose(_weights(run0), single, rtol=0, atol=1e-7)
    capsys.readouterr()
    assert main(["status", sweep]) == 0  # the submitter is gone: run.json and the job server tell
    out = capsys.readouterr().out
    assert out.count(f"ray/{sid} (SUCCEEDED)") == 2 and out.count(" done ") == 2


def test_cancel_detached_sweep(head, tmp_path, capsys):
    overrides = tiny(str(tmp_path / "runs"), "sweep.grid.seed=[0,1]", "launch.ray.num_cpus=1", "optim.max_iters=40",
                     f"launch.ray.address={head.address}", steps=200)
    assert main(["submit", CONFIG, *overrides, "--backend", "ray", "--no-wait"]) == 0
    assert "queued 2 run(s)" in capsys.readouterr().out
    sweep = str(tmp_path / "runs" / "advection")
    runs = find_runs(sweep)
    wait_for(lambda: any(run_status(r)["steps_done"] >= 1 for r in runs), 240, "a run to commit a step")
    assert main(["cancel", sweep]) == 0
    assert "cancelled 2 run(s)" in capsys.readouterr().out
    sid = read_state(runs[0])["ray_job"]
    assert job_client(head.dashboard_url).get_job_status(sid).value == "STOPPED"
    steps = [run_status(r)["steps_done"] for r in runs]
    for r in runs:
        st = read_state(r)
        assert st["state"] == "cancelled" and st["reason"].startswith("cancelled by user"), st
    time.sleep(3)
    assert [run_status(r)["steps_done"] for r in runs] == steps  # nothing computes any more
    assert all(read_state(r)["state"] == "cancelled" for r in runs)
    assert max(steps) < 200
    capsys.readouterr()
    assert main(["status", sweep]) == 0
    assert capsys.readouterr().out.count(f"ray/{sid} (STOPPED)") == 2


# -- a cluster's nodes -----------------------------------------------------------------------


def test_join_check_names_the_nodes_missing(head):
    assert wait_for_nodes(head.address, [head.node_name], timeout=30) == [head.node_name]
    with pytest.raises(InsrError, match=r"node\(s\) ghost-a, ghost-b did not join the head within 2 s "
                                        r"\(joined: 127\.0\.0\.1\)"):
        wait_for_nodes(head.address, [head.node_name, "ghost-b", "ghost-a"], timeout=2)


def test_detect_reads_the_ray_gang_variables():
    from insr_hpc.launch.ddp import ProcessGroupInfo, RayGang, detect

    place = RayGang(3, 4, 1, "10.0.0.7", 29611).env()
    assert place["INSR_RAY_RANK"] == "3" and place["INSR_RAY_MASTER_PORT"] == "29611"
    assert detect(place) == ProcessGroupInfo("ray", 3, 4, 1, "10.0.0.7", 29611)


def test_ports_differ_between_jobs():
    a, b = RayPorts.for_job(41), RayPorts.for_job(42)
    assert not set(a.__dict__.values()) & set(b.__dict__.values())
    assert len(set(a.__dict__.values())) == 9 and a == RayPorts.for_job(41)

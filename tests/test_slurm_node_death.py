"""A Slurm node that dies mid-run, on the dev cluster: its slurmd and every process of
the job on it are SIGKILLed at once, and the node is marked DOWN (what slurmctld does
once ``SlurmdTimeout`` passes without an answer). Slurm requeues the job (NODE_FAIL,
``JobRequeue=1``); it restarts on the other node, takes over the dead process's lock and
resumes after the last committed step: every step committed once, weights as an
uninterrupted run, and run.json / ``insr-hpc status`` say what ended the first attempt."""

from __future__ import annotations

import os
import signal
import subprocess

from _slurm import (
    assert_resumed_exactly,
    finish_reference,
    scontrol_job,
    start_reference,
    submit_no_wait,
    wait_done,
    wait_for,
    wait_mid_run,
)
from conftest import REPO

from insr_hpc.cli import main
from insr_hpc.run import read_state


def _job_processes(job: str) -> list[int]:
    """Every process of Slurm job ``job`` (its environment names it), and its slurmstepds."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
        except OSError:
            continue
        if f"SLURM_JOB_ID={job}".encode() in env or cmd.startswith(f"slurmstepd: [{job}.".encode()):
            pids.append(int(entry))
    return pids


def _kill_node(node: str, job: str) -> list[int]:
    slurm_dir = os.path.dirname(os.environ["SLURM_CONF"])
    with open(os.path.join(slurm_dir, f"slurmd-{node}.pid")) as fh:
        slurmd = int(fh.read().strip())
    victims = [slurmd, *_job_processes(job)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    subprocess.run(["scontrol", "update", f"NodeName={node}", "State=DOWN", "Reason=test: node died"],
                   check=True, timeout=30)
    return victims


def test_node_death_requeues_the_job_and_it_resumes_exactly(slurm_cluster, tmp_path, capsys):
    ref = start_reference(str(tmp_path / "ref"))  # computed while the job runs
    run_dir = submit_no_wait(str(tmp_path / "job"))
    try:
        job_id, before = wait_mid_run(run_dir)
        first = read_state(run_dir)
        info = scontrol_job(job_id)
        node, raw_id = info["NodeList"], info["JobId"]
        killed = _kill_node(node, raw_id)
        assert first["pid"] in killed  # the run's own process died with its node
        requeued = wait_for(lambda: (j := scontrol_job(job_id)).get("JobState") in ("PENDING", "RUNNING", "COMPLETED")
                            and int(j.get("Restarts", "0")) >= 1 and j, 120, "the job to be requeued")
        if requeued["JobState"] == "PENDING":  # a requeued job waits a while before it may start: now
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True, timeout=30)
        wait_done(run_dir, timeout=300)
    finally:
        # the node comes back (slurmd restarted, node resumed), as for the tests after this one
        subprocess.run([os.path.join(REPO, "slurm", "dev-cluster.sh"), "start"], capture_output=True, timeout=120)
    state = read_state(run_dir)
    assert state["attempts"] == 2 and state["pid"] != first["pid"], state
    (why,) = state["earlier_attempts"]
    assert why.startswith(f"attempt 1 ended without recording an outcome (its process {first['pid']} on "), why
    assert int(why.rsplit("after step ", 1)[1]) >= before
    assert_resumed_exactly(run_dir, finish_reference(ref, str(tmp_path / "ref")))
    capsys.readouterr()
    assert main(["status", os.path.dirname(run_dir)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("r000"))
    assert row.split()[1] == "done" and "attempt 1 ended without recording an outcome" in row, row

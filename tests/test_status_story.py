"""``insr-hpc status`` tells a sweep's story: which sweep each run belongs to, totals,
``--json`` (JSON Lines matching run.json), ``--watch``, where a running run is inside a
long step (``progress.json``), a reconstruction's kept weights and blend weight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from _small import REPO
from conftest import CONFIG, tiny

from insr_hpc.analysis import status
from insr_hpc.cli import main
from insr_hpc.pde import workload
from insr_hpc.rundir import ProgressNote, RunDir
from insr_hpc.store import StepStore, VarSpec

STEPS = 5


def _run(run_dir: str, committed: int, state: str = "done", error: str = "rel_l2", attrs: dict | None = None,
         **fields) -> str:
    """A run directory: a store with ``committed`` of STEPS steps and run.json written
    through RunDir as a run would (pending → running → ``state``)."""
    os.makedirs(run_dir)
    variables = {
        "step": VarSpec(("step",), (STEPS,), "int32", data=np.arange(STEPS, dtype=np.int32)),
        "loss": VarSpec(("step", "substep"), (STEPS, 2), "float64"),
        error: VarSpec(("step",), (STEPS,), "float64"),
        "capped": VarSpec(("step", "substep"), (STEPS, 2), "int8", fill=-1),
    }
    store = StepStore.create(os.path.join(run_dir, "store.zarr"), variables, {"run_id": "r", **(attrs or {})})
    for step in range(committed):
        store.commit_step(step, {"loss": [0.5, 0.25], error: 0.1 * (step + 1), "capped": [step % 2, -1]})
    rd = RunDir(run_dir)
    rd.transition("pending", None, run_id=os.path.basename(run_dir))
    if state != "pending":
        rd.begin_attempt(state="running", reason=None, host="elsewhere", pid=4242, started=time.time(),
                         backend="slurm", job_id=f"77{committed}")
    if state not in ("pending", "running"):
        rd.transition(state, fields.pop("reason", None), ended=time.time(), **fields)
    return run_dir


def _two_sweeps(root) -> dict[str, str]:
    return {
        "adv": _run(str(root / "advection" / "r000"), STEPS, "done"),
        "e0": _run(str(root / "euler_sweep" / "r000"), 2, "running"),
        "e1": _run(str(root / "euler_sweep" / "r001"), 1, "failed", reason="DivergenceError: step 1"),
    }


def _no_engine(monkeypatch):
    """The runs name Slurm jobs: status would ask squeue; here there is no engine to ask."""
    from insr_hpc import cli

    monkeypatch.setattr(cli, "_add_job_states", lambda states: None)


def test_runs_of_several_sweeps_show_their_sweep_and_a_totals_line(tmp_path, capsys, monkeypatch):
    _no_engine(monkeypatch)
    root = tmp_path / "runs"
    _two_sweeps(root)
    assert main(["status", str(root)]) == 1  # one failed
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["sweep", "run", "state", "steps", "capped"]
    rows = [line.split() for line in lines[1:4]]
    assert [r[:3] for r in rows] == [["advection", "r000", "done"], ["euler_sweep", "r000", "running"],
                                     ["euler_sweep", "r001", "failed"]]
    assert "5/5" in rows[0] and "2/5" in rows[1] and "1/5" in rows[2]
    # capped: steps 1 and 3 of the done run, step 1 of the running one
    assert lines[-1] == "3 runs: 1 running, 1 done, 1 failed; steps 8/15; capped sub-problems 3/8"
    # one sweep: no sweep column (the run id says it all)
    assert main(["status", str(root / "euler_sweep")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[0] == "run" and out[-1].startswith("2 runs: 1 running, 1 failed; steps 3/10")


def test_json_lines_match_run_json(tmp_path, capsys, monkeypatch):
    _no_engine(monkeypatch)
    root = tmp_path / "runs"
    runs = _two_sweeps(root)
    assert main(["status", str(root), "--json"]) == 1
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]  # JSON Lines: one object per run, nothing else
    assert len(records) == 3
    by_dir = {r["run_dir"]: r for r in records}
    assert set(by_dir) == set(runs.values())
    for run_dir in runs.values():
        rec, recorded = by_dir[run_dir], RunDir(run_dir).read_state()
        assert list(rec) == list(status.RECORD_KEYS)  # stable keys, every one present
        for key in ("state", "reason", "backend", "job_id", "host", "pid", "attempts", "started", "ended", "updated"):
            assert rec[key] == recorded.get(key), key
        assert rec["run"] == recorded["run_id"] == os.path.basename(run_dir)
        assert rec["recorded_state"] == recorded["state"]
        assert rec["sweep"] == os.path.basename(os.path.dirname(run_dir))
    adv = by_dir[runs["adv"]]
    assert adv["steps_done"] == adv["steps_total"] == STEPS
    assert adv["capped"] == {"stopped_at_cap": 2, "substeps": 5}
    assert adv["error"] == {"name": "rel_l2", "value": 0.5, "epoch": None} and adv["loss"] == 0.5
    assert by_dir[runs["e1"]]["reason"] == "DivergenceError: step 1"
    assert by_dir[runs["e0"]]["progress"] is None  # running, but no note yet


def test_watch_returns_at_once_when_every_run_is_final(tmp_path, capsys):
    root = tmp_path / "runs"
    _run(str(root / "advection" / "r000"), STEPS, "done")
    _run(str(root / "advection" / "r001"), 3, "cancelled", reason="cancelled by user")
    t0 = time.time()
    assert main(["status", str(root), "--watch", "60"]) == 0
    assert time.time() - t0 < 10
    out = capsys.readouterr().out
    assert out.count("--- insr-hpc status") == 1 and "2 runs: 1 done, 1 cancelled" in out


def test_watch_reprints_a_running_sweep_until_ctrl_c(tmp_path):
    root = tmp_path / "runs"
    _run(str(root / "advection" / "r000"), STEPS, "done")
    running = _run(str(root / "advection" / "r001"), 1, "running")
    state = RunDir(running).read_state()
    state.update(backend="local", job_id=None)  # no engine to ask; host elsewhere: not checked for its pid
    with open(RunDir(running).state_file, "w", encoding="utf-8") as fh:
        json.dump(state, fh)
    log = tmp_path / "watch.log"  # a file, not a terminal
    with open(log, "w", encoding="utf-8") as fh:
        # Ctrl-C as at a terminal: a shell running the suite in the background (`cmd &`
        # without job control) starts it with SIGINT ignored, which children inherit and
        # Python then never turns into KeyboardInterrupt; restore the default first.
        proc = subprocess.Popen([sys.executable, "-m", "insr_hpc", "status", str(root), "--watch", "0.2"],
                                stdout=fh, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.time() + 60
            while time.time() < deadline and log.read_text().count("--- insr-hpc status") < 3:
                assert proc.poll() is None, proc.communicate()[1]  # a running run: it must keep watching
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, err  # as a single status: nothing failed
    assert out.count("--- insr-hpc status") >= 2, out  # a file, not a terminal: appended, separated
    assert "\033[2J" not in out
    assert "Traceback" not in err


def test_progress_note_of_a_long_initial_fit_is_shown_by_status(tmp_path, monkeypatch):
    """An advection run whose step 0 fit is 400 Adam iterations: while it fits, status
    (asked from inside the run, at iteration 200) shows ``fit 200/400``."""
    root = str(tmp_path / "runs")
    run_dir = os.path.join(root, "advection", "r000")
    seen = {}

    class EveryIteration(ProgressNote):  # no 2 s throttle: a note at every iteration
        def __init__(self, run_dir, enabled=True, every=2.0):
            super().__init__(run_dir, enabled, every=0.0)

        def __call__(self, force=False, **note):
            super().__call__(force, **note)
            if note.get("step") == 0 and note.get("iteration") == 200 and "table" not in seen:
                seen["table"] = status.format_table([status.run_status(run_dir, root)])
                seen["record"] = status.as_record(status.run_status(run_dir, root))

    monkeypatch.setattr(workload, "ProgressNote", EveryIteration)
    assert main(["run", CONFIG, *tiny(root, "optim.init_max_iters=400", steps=1)]) == 0
    header, row = seen["table"].splitlines()[:2]
    assert header.split()[:5] == ["run", "state", "steps", "capped", "progress"]
    assert row.split()[:5] == ["r000", "running", "0/2", "-", "fit"] and " fit 200/400 " in row
    rec = seen["record"]
    assert rec["progress_text"] == "fit 200/400"
    assert {k: rec["progress"][k] for k in ("step", "substep", "iteration", "of")} == \
        {"step": 0, "substep": "fit", "iteration": 200, "of": 400}
    # finished: the last note stays on disk, status shows no progress for a final run
    assert RunDir(run_dir).read_progress()["step"] == 1
    done = status.run_status(run_dir, root)
    assert done["state"] == "done" and done["progress"] is None
    assert "progress" not in status.format_table([done]).splitlines()[0]


def test_progress_note_is_throttled_and_never_written_by_other_ranks(tmp_path):
    run_dir = str(tmp_path / "r")
    other = ProgressNote(run_dir, enabled=False)
    other(step=0, substep="fit", iteration=1, of=2)
    assert not os.path.exists(os.path.join(run_dir, RunDir.PROGRESS))
    note = ProgressNote(run_dir, every=3600)
    os.makedirs(run_dir)
    note(step=0, substep="fit", iteration=1, of=9)  # the first call writes
    note(step=0, substep="fit", iteration=2, of=9)  # then at most once per ``every`` seconds
    assert RunDir(run_dir).read_progress()["iteration"] == 1
    note(force=True, step=0, substep="fit", iteration=3, of=9)
    assert RunDir(run_dir).read_progress()["iteration"] == 3
    assert RunDir.PROGRESS in RunDir.OUTPUTS  # output.overwrite clears it with the rest


def test_a_stale_note_is_not_shown(tmp_path):
    run_dir = _run(str(tmp_path / "runs" / "s" / "r000"), 2, "running")
    rd = RunDir(run_dir)
    rd.write_progress({"step": 1, "substep": "advance", "iteration": 5, "of": 10})  # step 1 is committed since
    assert status.run_status(run_dir)["progress"] is None
    rd.write_progress({"step": 2, "substep": "advance", "iteration": 5, "of": 10})
    st = status.run_status(run_dir)
    assert status.progress_text(st["progress"]) == "step 2 advance 5/10"
    assert status.progress_text({**st["progress"], "time": time.time() - 600}) == "step 2 advance 5/10 (10 min ago)"
    rd.update(started=time.time() + 5)  # a newer attempt than the note
    assert status.run_status(run_dir)["progress"] is None
    assert status.progress_text({"epoch": 12, "of": 200, "time": time.time()}) == "epoch 12/200"


def test_a_finished_reconstruction_shows_its_kept_weights_and_blend_weight(tmp_path, capsys, monkeypatch):
    _no_engine(monkeypatch)
    root = tmp_path / "runs"
    summary = {"mse": 0.0123, "val_mse": 0.02, "epochs": 5, "selected_epoch": 3, "blend_weight": 0.4}
    hybrid = _run(str(root / "recon" / "r000"), STEPS, "done", error="mse", summary=summary)
    # recorded before the summary carried blend_weight: read from the store's attributes
    older = _run(str(root / "recon" / "r001"), STEPS, "done", error="mse", attrs={"blend_weight": 0.25},
                 summary={k: v for k, v in summary.items() if k != "blend_weight"})
    plain = _run(str(root / "recon" / "r002"), STEPS, "done", error="mse", summary={**summary, "blend_weight": None})
    assert main(["status", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[header.index("error") + 1] == "blend"
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert "mse=1.230e-02 (epoch 3)" in rows["r000"] and " 0.400 " in rows["r000"]  # not the last evaluated 0.5
    assert " 0.250 " in rows["r001"]
    assert "mse=1.230e-02 (epoch 3)  -" in rows["r002"]
    rec = status.as_record(status.run_status(hybrid, str(root)))
    assert rec["error"] == {"name": "mse", "value": 0.0123, "epoch": 3} and rec["blend_weight"] == 0.4
    assert status.run_status(older)["blend_weight"] == 0.25 and status.run_status(plain)["blend_weight"] is None


def test_submits_bar_counts_the_committed_steps_of_every_run(tmp_path):
    from types import SimpleNamespace

    from insr_hpc.launch.local import _StepCount, planned_steps

    class Bar:
        n, total = 0, 0

        def update(self, k):
            self.n += k

        def refresh(self):
            pass

    specs = [SimpleNamespace(run_id="a", run_dir=_run(str(tmp_path / "a"), 2, "running"), config={"time": {"steps": 4}}),
             SimpleNamespace(run_id="b", run_dir=str(tmp_path / "b"), config={"time": {"steps": 9}}),  # no store yet
             SimpleNamespace(run_id="c", run_dir=str(tmp_path / "c"), config={"train": {"epochs": 30}})]
    assert [planned_steps(s) for s in specs] == [5, 10, 30]
    bar, count = Bar(), _StepCount(specs)
    count.show(bar)
    assert (bar.n, bar.total) == (2, 45)  # the store's length and committed steps where there is one
    StepStore.open(os.path.join(specs[0].run_dir, "store.zarr")).commit_step(2, {"loss": [0.1, 0.1]})
    count.poll(specs[:1])
    count.show(bar)
    assert (bar.n, bar.total) == (3, 45)
    off = _StepCount(specs, enabled=False)  # no bar (not a terminal): nothing read
    assert off.done == {"a": 0, "b": 0, "c": 0}

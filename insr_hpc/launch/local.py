"""The embedded default: runs as worker processes on this machine, no services.

Each run is its own ``python -m insr_hpc.launch.worker`` process (a crash or a kill
fails that run alone); at most ``launch.workers`` run at once, by default as many as
the cores allow at ``launch.threads_per_job`` threads each. With
``launch.ddp.nproc_per_node > 1`` a run is ``torchrun --standalone`` over that many
ranks (``python -m insr_hpc.launch.ddp``), and counts as that many slots.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as wait_any

from tqdm import tqdm

from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.launch.base import BACKENDS, Backend, SubmitInterrupted
from insr_hpc.launch.packing import make_packs
from insr_hpc.rundir import EXIT_LOCKED, FINAL, RunDir, pid_alive
from insr_hpc.store_small import read_small

POLL_S = 1.0  # how often submit's bar looks at the running runs' committed steps


def planned_steps(spec) -> int:
    """Steps (PDE: time steps + the initial fit) or epochs (reconstruction) a run's
    config asks for, before its store says (a classical reconstruction has one)."""
    cfg = spec.config if isinstance(spec.config, dict) else {}
    try:
        if "time" in cfg:
            return int(cfg["time"]["steps"]) + 1
        if "train" in cfg:
            return int(cfg["train"]["epochs"])
    except (KeyError, TypeError, ValueError):
        pass
    return 1


def store_steps(run_dir: str) -> tuple[int, int | None]:
    """(leading committed steps, steps of the store) of a run's store; (0, None) without
    a readable one. Reads only the small ``committed`` array (numpy: cheap)."""
    try:
        done = read_small(os.path.join(RunDir(run_dir).store, "committed")).astype(bool)
    except Exception:
        return 0, None
    return (int(done.argmin()) if not done.all() else len(done)), len(done)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def finished_line(spec) -> str:
    """``run_id: state (reason) key=value …`` for a run that just ended."""
    state = RunDir(spec.run_dir).read_state()
    text = f"{spec.run_id}: {state.get('state', '?')}"
    if state.get("reason"):
        text += f" ({state['reason']})"
    summary = state.get("summary") if isinstance(state.get("summary"), dict) else {}
    scalars = [f"{k}={v:.3e}" for k, v in summary.items() if isinstance(v, float) and v == v][:4]
    return " ".join([text, *scalars])


@BACKENDS.register("local")
class LocalBackend(Backend):
    name = "local"
    can_pack = True

    def __init__(self, launch_cfg):
        super().__init__(launch_cfg)
        if launch_cfg.ddp.nodes != 1:
            raise ConfigError("launch.ddp.nodes", f"the local backend runs on one machine, got {launch_cfg.ddp.nodes}")

    def available(self, detach: bool = False) -> None:
        if detach:
            raise InsrError("--no-wait: backend 'local' runs inside this process; only slurm and ray can detach")

    def states(self, runs) -> dict[str, str]:
        """RUNNING while the worker's process group lives, else GONE."""
        out = {}
        for st in runs:
            job = str(st.get("job_id") or "")
            if job.isdigit():
                out[st["run_id"]] = "RUNNING" if pid_alive(int(job)) else "GONE"
        return out

    def workers(self, n_runs: int) -> int:
        per_run = self.launch.threads_per_job * self.launch.ddp.nproc_per_node
        n = self.launch.workers or max(1, available_cores() // per_run)
        return max(1, min(n, n_runs))

    def command(self, spec_path: str) -> list[str]:
        nproc = self.launch.ddp.nproc_per_node
        if nproc == 1:
            return [sys.executable, "-m", "insr_hpc.launch.worker", spec_path]
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                "-m", "insr_hpc.launch.ddp", spec_path]

    def _run_one(self, spec) -> str:
        rd = RunDir(spec.run_dir)
        if self._stopping is not None:  # submit was stopped before this run started
            return "pending"
        with open(rd.log, "ab") as log:
            proc = subprocess.Popen(
                self.command(rd.spec),
                stdout=log, stderr=subprocess.STDOUT, env=self._worker_env(), start_new_session=True,
            )
            with self._lock:
                self._procs[spec.run_id] = proc
            if self._stopping is not None:  # the signal came while it was starting
                _signal_group(proc, self._stopping)
            code = proc.wait()
            with self._lock:
                self._procs.pop(spec.run_id, None)
        if code == EXIT_LOCKED:
            return "skipped"
        if code == 0:  # the run ended done or suspect (the worker's exit code says no more)
            state = rd.read_state()
            if state.get("state") in FINAL or state.get("pid") == proc.pid:
                return state.get("state", "failed")
            return "done"  # another submit's worker has started the finished run again since
        return rd.settle(f"worker exited with code {code}" + (" (killed by signal)" if code < 0 else ""),
                         stopping=self._stop_reason())

    def _stop_reason(self) -> str | None:
        """The pending reason of a run killed because submit itself was stopped."""
        if self._stopping is None:
            return None
        return (f"interrupted: killed {self.launch.grace_s:g} s after {signal.Signals(self._stopping).name} "
                "(grace period); submit again to resume")

    def submit(self, specs, sweep_dir, progress=True, wait=True):
        """Run the specs, at most ``workers`` at once (with ``launch.pack`` > 1: packs of
        compatible runs, one worker process each). SIGTERM/SIGINT stop it: running
        workers get SIGTERM (they stop at their next step boundary, state ``pending``)
        and are killed after ``launch.grace_s``; queued runs do not start; then
        :class:`SubmitInterrupted` (the CLI exits 128 + signal)."""
        results: dict[str, str] = {}
        self._procs, self._lock, self._stopping = {}, threading.Lock(), None
        units = make_packs(specs, self.launch.pack)
        if self.launch.pack > 1:
            print(f"insr-hpc: {len(specs)} run(s) in {len(units)} process(es) of at most {self.launch.pack} "
                  "packed runs", file=sys.stderr, flush=True)
        restore = self._install_handlers()
        try:
            with ThreadPoolExecutor(self.workers(len(units))) as pool:
                futures = {pool.submit(self._run_unit, unit): unit for unit in units}
                # A bar over the steps of every run (on a terminal; tqdm's disable=None turns
                # it off when stderr is not one, leaving the plain lines below), advanced as
                # the running runs commit steps, polled every POLL_S from their stores.
                bar = tqdm(total=len(specs), desc="steps", unit="step", disable=None if progress else True)
                steps = _StepCount(specs, enabled=not bar.disable)  # (disabled: nothing polled)
                steps.show(bar)
                waiting = set(futures)
                while waiting:
                    finished, waiting = wait_any(waiting, timeout=POLL_S, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        self._finished(fut, futures[fut], results, bar, steps)
                    steps.poll([spec for fut in waiting if fut.running() for spec in futures[fut]])
                    steps.show(bar)
                bar.close()
        finally:
            restore()
        if self._stopping is not None:
            for spec in specs:
                rd = RunDir(spec.run_dir)
                if results.get(spec.run_id) == "pending" and not rd.read_state().get("reason"):
                    rd.settle("", stopping="interrupted: submit was stopped before the run started",
                              unfinished=("pending",))
            raise SubmitInterrupted(self._stopping, results)
        return results

    def _finished(self, fut, unit, results: dict[str, str], bar, steps: _StepCount) -> None:
        """A unit's worker has ended: record its runs' outcomes, one line per run."""
        try:
            outcome = fut.result()
        except OSError as exc:
            outcome = {}
            for spec in unit:
                outcome[spec.run_id] = RunDir(spec.run_dir).settle(
                    f"could not start worker: {exc}", unfinished=("pending", "running"))
        steps.poll(unit)
        steps.show(bar)
        for spec in unit:
            results[spec.run_id] = outcome.get(spec.run_id, "failed")
            if self._stopping is None or results[spec.run_id] != "pending":
                bar.write(finished_line(spec) if results[spec.run_id] != "skipped" else
                          f"{spec.run_id}: skipped: being computed by another process (its lock: "
                          f"{RunDir(spec.run_dir).lock_file}); state now {RunDir(spec.run_dir).read_state().get('state')}")

    def _run_unit(self, unit) -> dict[str, str]:
        if len(unit) == 1:
            return {unit[0].run_id: self._run_one(unit[0])}
        return self._run_pack(unit)

    def _run_pack(self, specs) -> dict[str, str]:
        """k runs in one worker process (``python -m insr_hpc.launch.worker S1 … Sk``):
        its output goes to ``packs/<first run>.log`` beside the runs; each run's
        progress lines to its own ``log.txt``."""
        if self._stopping is not None:
            return {s.run_id: "pending" for s in specs}
        paths = [RunDir(s.run_dir).spec for s in specs]
        log_dir = os.path.join(os.path.dirname(specs[0].run_dir), "packs")
        os.makedirs(log_dir, exist_ok=True)
        key = f"pack:{specs[0].run_id}"
        with open(os.path.join(log_dir, f"{specs[0].run_id}.log"), "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "insr_hpc.launch.worker", *paths], stdout=log,
                                    stderr=subprocess.STDOUT, env=self._worker_env(), start_new_session=True)
            with self._lock:
                self._procs[key] = proc
            if self._stopping is not None:
                _signal_group(proc, self._stopping)
            code = proc.wait()
            with self._lock:
                self._procs.pop(key, None)
        out = {}
        for spec in specs:
            rd = RunDir(spec.run_dir)
            state = rd.read_state()
            if state.get("pid") != proc.pid:  # never started by this pack: another process holds it
                out[spec.run_id] = "skipped" if state.get("state") == "running" else state.get("state", "failed")
                continue
            out[spec.run_id] = rd.settle(f"pack worker exited with code {code}" + (" (killed by signal)" if code < 0
                                         else ""), stopping=self._stop_reason())
        return out

    def _worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        threads = str(self.launch.threads_per_job)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, INSR_HPC_BACKEND="local",
                   INSR_HPC_PARENT_PID=str(os.getpid()))
        return env

    def _install_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def on_signal(signum, frame):
            again = self._stopping is not None
            self._stopping = self._stopping or signum
            with self._lock:
                procs = list(self._procs.values())
            if again:  # a second signal: do not wait for the grace period
                for proc in procs:
                    _signal_group(proc, signal.SIGKILL)
                return
            print(f"\ninsr-hpc: {signal.Signals(signum).name}: stopping {len(procs)} running run(s) at their next "
                  f"step (killed after {self.launch.grace_s:g} s); no new runs start", file=sys.stderr, flush=True)
            for proc in procs:  # the same signal: the runs' state says which one stopped them
                _signal_group(proc, signum)
            timer = threading.Timer(self.launch.grace_s, self._kill_all)
            timer.daemon = True
            timer.start()

        for sig in previous:
            signal.signal(sig, on_signal)

        def restore():
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def _kill_all(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)

    def cancel(self, runs):
        """Ask each unfinished run to stop (:meth:`RunDir.request_cancel`): a run stops at
        its next step boundary, a packed run is dropped by its pack there, a queued one
        never starts; each is recorded ``cancelled`` at once (a pack records its own)."""
        cancelled = []
        for st in runs:
            if st.get("backend") != "local" or st.get("state") not in ("pending", "running"):
                continue
            rd = RunDir(st["run_dir"])
            rd.request_cancel()
            packed = len(st.get("pack") or ()) > 1 and st.get("state") == "running"
            if packed or rd.cancel_if_live("cancelled by user"):
                cancelled.append(st.get("run_id", rd.path))
        return cancelled


class _StepCount:
    """Committed steps and planned steps of every run of a submit (submit's bar)."""

    def __init__(self, specs, enabled: bool = True):
        self.enabled = enabled
        self.total = {s.run_id: planned_steps(s) for s in specs}
        self.done = dict.fromkeys(self.total, 0)
        if enabled:
            self.poll(specs)  # resumed runs start where their stores are

    def poll(self, specs) -> None:
        if not self.enabled:
            return
        for spec in specs:
            done, total = store_steps(spec.run_dir)
            self.done[spec.run_id] = done
            if total is not None:
                self.total[spec.run_id] = total

    def show(self, bar) -> None:
        if not self.enabled:
            return
        total, done = sum(self.total.values()), sum(self.done.values())
        bar.total = total
        if done != bar.n:
            bar.update(done - bar.n)  # (a run started over may take steps back)
        bar.refresh()  # every poll: the elapsed time moves on through a long step


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the worker's process group (a torchrun worker has ranks below it)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

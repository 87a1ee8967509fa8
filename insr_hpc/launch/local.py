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
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from insr_hpc.errors import ConfigError
from insr_hpc.launch.base import BACKENDS, Backend, SubmitInterrupted
from insr_hpc.launch.packing import make_packs
from insr_hpc.run import read_state
from insr_hpc.rundir import EXIT_LOCKED, RunDir, pid_alive


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def finished_line(spec) -> str:
    """``run_id: state (reason) key=value …`` for a run that just ended."""
    state = read_state(spec.run_dir)
    text = f"{spec.run_id}: {state.get('state', '?')}"
    if state.get("reason"):
        text += f" ({state['reason']})"
    summary = state.get("summary") if isinstance(state.get("summary"), dict) else {}
    scalars = [f"{k}={v:.3e}" for k, v in summary.items() if isinstance(v, float) and v == v][:4]
    return " ".join([text, *scalars])


@BACKENDS.register("local")
class LocalBackend(Backend):
    name = "local"

    def __init__(self, launch_cfg):
        super().__init__(launch_cfg)
        if launch_cfg.ddp.nodes != 1:
            raise ConfigError("launch.ddp.nodes", f"the local backend runs on one machine, got {launch_cfg.ddp.nodes}")

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
        path = spec.save()
        env = self._worker_env()
        with open(rd.log, "ab") as log:
            proc = subprocess.Popen(
                self.command(path),
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
            with self._lock:
                self._procs[spec.run_id] = proc
            if self._stopping is not None:  # the signal came while it was starting
                _signal_group(proc, self._stopping)
            holder = rd.holder()
            if holder is None or holder.get("pid") == proc.pid:  # not another submit's run
                rd.update(backend="local", job_id=str(proc.pid))
            code = proc.wait()
            with self._lock:
                self._procs.pop(spec.run_id, None)
        if code == EXIT_LOCKED:
            return "skipped"
        rd.update(backend="local", job_id=str(proc.pid))
        state = rd.read_state()
        if code != 0 and state.get("state") == "running":
            if self._stopping is not None:
                state = rd.transition("pending", f"interrupted: killed {self.launch.grace_s:g} s after "
                                      f"{signal.Signals(self._stopping).name} (grace period); submit again to resume")
            else:
                reason = f"worker exited with code {code}" + (" (killed by signal)" if code < 0 else "")
                state = rd.transition("failed", reason)
        return state.get("state", "failed")

    def submit(self, specs, sweep_dir, progress=True):
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
                bar = tqdm(total=len(specs), desc="runs", unit="run", disable=None if progress else True)
                for fut in as_completed(futures):
                    unit = futures[fut]
                    try:
                        outcome = fut.result()
                    except OSError as exc:
                        outcome = {}
                        for spec in unit:
                            RunDir(spec.run_dir).transition("failed", f"could not start worker: {exc}")
                            outcome[spec.run_id] = "failed"
                    for spec in unit:
                        results[spec.run_id] = outcome.get(spec.run_id, "failed")
                        if self._stopping is None or results[spec.run_id] != "pending":
                            bar.write(finished_line(spec) if results[spec.run_id] != "skipped" else
                                      f"{spec.run_id}: skipped: being computed by another process (its lock: "
                                      f"{RunDir(spec.run_dir).lock_file}); state now {read_state(spec.run_dir).get('state')}")
                        bar.update(1)
                bar.close()
        finally:
            restore()
        if self._stopping is not None:
            for spec in specs:
                rd = RunDir(spec.run_dir)
                if results.get(spec.run_id) == "pending" and rd.read_state().get("state") == "pending" \
                        and not rd.read_state().get("reason"):
                    rd.transition("pending", "interrupted: submit was stopped before the run started")
            raise SubmitInterrupted(self._stopping, results)
        return results

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
        paths = [s.save() for s in specs]
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
            for spec in specs:
                rd = RunDir(spec.run_dir)
                holder = rd.holder()
                if holder is None or holder.get("pid") == proc.pid:  # not another submit's run
                    rd.update(backend="local", job_id=str(proc.pid))
            code = proc.wait()
            with self._lock:
                self._procs.pop(key, None)
        out = {}
        for spec in specs:
            rd = RunDir(spec.run_dir)
            state = rd.read_state()
            if state.get("pid") == proc.pid:
                rd.update(backend="local", job_id=str(proc.pid))
            if state.get("state") == "running" and state.get("pid") == proc.pid:
                if self._stopping is not None:
                    state = rd.transition("pending", f"interrupted: killed {self.launch.grace_s:g} s after "
                                          f"{signal.Signals(self._stopping).name} (grace period); submit again to resume")
                else:
                    state = rd.transition("failed", f"pack worker exited with code {code}"
                                          + (" (killed by signal)" if code < 0 else ""))
            held = state.get("pid") not in (None, proc.pid) and state.get("state") == "running"
            out[spec.run_id] = "skipped" if held else state.get("state", "failed")
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

    def cancel(self, states):
        cancelled = []
        for st in states:
            pid = st.get("job_id")
            if st.get("backend") == "local" and st.get("state") in ("pending", "running") and pid:
                rd = RunDir(st["run_dir"])
                rd.update(cancel_requested=True)
                if len(st.get("pack") or ()) > 1 and st.get("state") == "running" and pid_alive(int(pid)):
                    # a packed run: its pack drops it at the next step boundary (and records
                    # it cancelled); the pack's other runs go on
                    cancelled.append(st.get("run_id", pid))
                    continue
                try:
                    os.killpg(int(pid), signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    continue
                rd.transition("cancelled", "cancelled by user")
                cancelled.append(st.get("run_id", pid))
        return cancelled


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the worker's process group (a torchrun worker has ranks below it)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

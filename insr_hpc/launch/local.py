"""The embedded default: runs as worker processes on this machine, no services.

Each run is its own ``python -m insr_hpc.launch.worker`` process (a crash or a kill
fails that run alone); at most ``launch.workers`` run at once, by default as many as
the cores allow at ``launch.threads_per_job`` threads each. With
``launch.ddp.nproc_per_node > 1`` a run is ``torchrun --standalone`` over that many
ranks (``python -m insr_hpc.launch.ddp``), and counts as that many slots.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from insr_hpc.errors import ConfigError
from insr_hpc.launch.base import BACKENDS, Backend
from insr_hpc.run import read_state, update_state


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
        path = spec.save()
        env = dict(os.environ)
        threads = str(self.launch.threads_per_job)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, INSR_HPC_BACKEND="local")
        with open(os.path.join(spec.run_dir, "log.txt"), "ab") as log:
            proc = subprocess.Popen(
                self.command(path),
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )
            update_state(spec.run_dir, backend="local", job_id=str(proc.pid))
            code = proc.wait()
        state = read_state(spec.run_dir)
        if code != 0 and state.get("state") not in ("failed", "cancelled"):
            reason = f"worker exited with code {code}" + (" (killed by signal)" if code < 0 else "")
            state = update_state(spec.run_dir, state="failed", reason=reason)
        return state.get("state", "failed")

    def submit(self, specs, sweep_dir, progress=True):
        results: dict[str, str] = {}
        with ThreadPoolExecutor(self.workers(len(specs))) as pool:
            futures = {pool.submit(self._run_one, spec): spec for spec in specs}
            bar = tqdm(total=len(specs), desc="runs", unit="run", disable=None if progress else True)
            for fut in as_completed(futures):
                spec = futures[fut]
                try:
                    results[spec.run_id] = fut.result()
                except OSError as exc:
                    update_state(spec.run_dir, state="failed", reason=f"could not start worker: {exc}")
                    results[spec.run_id] = "failed"
                bar.write(finished_line(spec))
                bar.update(1)
            bar.close()
        return results

    def cancel(self, states):
        import signal

        cancelled = []
        for st in states:
            pid = st.get("job_id")
            if st.get("backend") == "local" and st.get("state") in ("pending", "running") and pid:
                try:
                    os.killpg(int(pid), signal.SIGTERM)
                except (ProcessLookupError, PermissionError):
                    continue
                update_state(st["run_dir"], state="cancelled", reason="cancelled by user")
                cancelled.append(st.get("run_id", pid))
        return cancelled

"""Ray: one Ray task per run, on a running cluster or on a local runtime we start.

``launch.ray.address`` set → ``ray.init(address=...)``; unset → a local runtime on
loopback with the dashboard off, shut down when the sweep ends. Each task reserves
``launch.ray.num_cpus/num_gpus/memory_gb``; Ray retries a failed task up to
``launch.max_retries`` times (exceptions included), and the retry resumes from the
store. ``insr-hpc cancel`` asks the submitting driver (through run.json) to
``ray.cancel`` the task: only the driver holds the task's reference.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from typing import Any

from insr_hpc.errors import InsrError
from insr_hpc.launch.base import BACKENDS, Backend
from insr_hpc.launch.local import available_cores
from insr_hpc.run import RunSpec, read_state, update_state

POLL_S = 0.5
CANCEL_WAIT_S = 15.0


def _execute_spec(spec_data: dict[str, Any], threads: int) -> str:
    """Body of the Ray task: run one spec in the Ray worker process."""
    from insr_hpc.run import execute

    spec = RunSpec(**spec_data)
    attempts = int(read_state(spec.run_dir).get("attempts", 0)) + 1  # Ray retries come back here
    update_state(spec.run_dir, backend="ray", host=os.uname().nodename, attempts=attempts)
    try:
        execute(spec, threads=threads)
    except Exception as exc:  # our errors take constructor arguments Ray cannot unpickle
        raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
    return read_state(spec.run_dir).get("state", "done")


@BACKENDS.register("ray")
class RayBackend(Backend):
    name = "ray"

    def _connect(self):
        try:
            import ray
        except ImportError:
            raise InsrError("launch.backend: 'ray' needs ray (pip install 'insr-hpc[cluster]')") from None
        rc = self.launch.ray
        if ray.is_initialized():
            return ray, False
        if rc.address:
            try:
                ray.init(address=rc.address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise InsrError(f"launch.ray.address: cannot connect to '{rc.address}': {exc}") from None
            return ray, True
        ray.init(
            num_cpus=available_cores(),
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
        )
        return ray, True

    def submit(self, specs, sweep_dir, progress=True):
        ray, started = self._connect()
        rc = self.launch.ray
        task = ray.remote(_execute_spec).options(
            num_cpus=rc.num_cpus,
            num_gpus=rc.num_gpus,
            memory=int(rc.memory_gb * 2**30) or None,
            max_retries=self.launch.max_retries,
            retry_exceptions=True,
            name="insr-hpc-run",
        )
        threads = max(1, int(rc.num_cpus) or self.launch.threads_per_job)
        refs: dict[Any, RunSpec] = {}
        try:
            for spec in specs:
                spec.save()
                update_state(spec.run_dir, run_id=spec.run_id, state="pending", reason=None, cancel_requested=False, attempts=0)
                ref = task.remote(asdict(spec), threads)
                update_state(spec.run_dir, backend="ray", job_id=ref.task_id().hex())
                refs[ref] = spec
            return self._wait(ray, refs, progress)
        finally:
            if started:
                ray.shutdown()

    def _wait(self, ray, refs: dict, progress: bool) -> dict[str, str]:
        results: dict[str, str] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=POLL_S)
            for ref in ready:
                spec = refs[ref]
                results[spec.run_id] = self._outcome(ray, ref, spec)
                if progress:
                    print(f"{spec.run_id}: {results[spec.run_id]} (ray task {ref.task_id().hex()[:12]})", flush=True)
            for ref in pending:
                spec = refs[ref]
                if read_state(spec.run_dir).get("cancel_requested"):
                    ray.cancel(ref, force=True)
        return results

    @staticmethod
    def _outcome(ray, ref, spec: RunSpec) -> str:
        try:
            return ray.get(ref)
        except Exception as exc:  # the run's own exception, a crashed worker, or a cancellation
            state = read_state(spec.run_dir)
            if state.get("cancel_requested"):
                update_state(spec.run_dir, state="cancelled", reason="cancelled by user (ray.cancel)")
                return "cancelled"
            if state.get("state") != "failed":
                msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
                update_state(spec.run_dir, state="failed", reason=f"{type(exc).__name__}: {msg[:200]}")
            return "failed"

    def cancel(self, states):
        """Ask the driver to cancel; wait until it confirms (or is found gone)."""
        asked = [st for st in states if st.get("state") in ("pending", "running")]
        for st in asked:
            update_state(st["run_dir"], cancel_requested=True)
        deadline = time.time() + CANCEL_WAIT_S
        waiting = list(asked)
        while waiting and time.time() < deadline:
            time.sleep(POLL_S)
            waiting = [st for st in waiting if read_state(st["run_dir"]).get("state") in ("pending", "running")]
        for st in waiting:
            # No driver answered: a Ray task dies with its driver, so nothing runs any more.
            update_state(st["run_dir"], state="cancelled", reason="cancelled (no Ray driver answered; its tasks end with it)")
        return [st.get("run_id") for st in asked]

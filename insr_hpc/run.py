"""RunSpec (plain, picklable) and ``execute``: run one job wherever it landed.

The run directory holds ``spec.json`` (what to run), ``run.json`` (its state),
``store.zarr`` and ``tb/``. Resume logic lives in the workload and the store, so a
spec executed twice, on any backend, continues where the first left off.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from insr_hpc.catalog import build_config
from insr_hpc.runtime import RunEnv, select_device
from insr_hpc.workloads import WORKLOADS

STATES = ("pending", "running", "done", "suspect", "failed", "cancelled")


@dataclass
class RunSpec:
    run_id: str
    run_dir: str
    config: dict[str, Any]  # fully resolved config (plain data)
    overrides: dict[str, Any] = field(default_factory=dict)  # this sweep point's values

    def save(self) -> str:
        os.makedirs(self.run_dir, exist_ok=True)
        path = os.path.join(self.run_dir, "spec.json")
        _atomic_json(path, asdict(self))
        return path

    @classmethod
    def load(cls, path: str) -> RunSpec:
        with open(path, encoding="utf-8") as fh:
            return cls(**json.load(fh))


def _atomic_json(path: str, data: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, default=str)
    os.replace(tmp, path)


def read_state(run_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError):
        return {"state": "pending"}


def update_state(run_dir: str, **changes: Any) -> dict[str, Any]:
    state = read_state(run_dir)
    state.update(changes)
    state["updated"] = time.time()
    _atomic_json(os.path.join(run_dir, "run.json"), state)
    return state


# What a run writes into its directory; ``clear_outputs`` removes it to start over.
RUN_OUTPUTS = ("store.zarr", "store.zarr.partial", "tb", "checkpoint.pt", "run.json", "error.txt")


def clear_outputs(run_dir: str) -> None:
    """Delete a run's results so it starts from step 0 (``output.overwrite=true``).

    Done once, by the command that submits the run, never by the run itself: a
    requeued or restarted run must resume, not wipe what it has already computed."""
    for name in RUN_OUTPUTS:
        path = os.path.join(run_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def execute(spec: RunSpec, env: RunEnv | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run one spec in this process. Records running/done/failed in ``run.json``.

    Returns the workload's summary; re-raises the workload's exception after recording it.
    """
    cfg = build_config(spec.config)
    if threads is None:
        threads = cfg.launch.threads_per_job
    torch.set_num_threads(max(1, threads))
    main = env is None or env.is_main
    if main:
        os.makedirs(spec.run_dir, exist_ok=True)
        update_state(
            spec.run_dir, run_id=spec.run_id, state="running", host=socket.gethostname(), pid=os.getpid(),
            started=time.time(), reason=None, overrides=spec.overrides,
        )
    try:
        env = env or RunEnv(device=select_device(cfg.device))
        summary = WORKLOADS.get(cfg.workload).run(cfg, spec.run_dir, env, spec.run_id)
    except BaseException as exc:
        if main:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
            with open(os.path.join(spec.run_dir, "error.txt"), "w", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
            update_state(spec.run_dir, state="failed", reason=reason, ended=time.time())
        raise
    if main:  # a finished run whose results fail a guard rail is "suspect", never "done"
        suspect = summary.get("suspect") if isinstance(summary, dict) else None
        update_state(spec.run_dir, state="suspect" if suspect else "done", reason=suspect, ended=time.time(),
                     summary=summary, world_size=env.world_size)
    return summary

"""RunSpec (plain, picklable) and ``execute``: run one job wherever it landed.

The run directory holds ``spec.json`` (what to run), ``run.json`` (its state),
``store.zarr`` and ``tb/``. Resume logic lives in the workload and the store, so a
spec executed twice, on any backend, continues where the first left off.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from insr_hpc.catalog import build_config
from insr_hpc.errors import InsrError
from insr_hpc.rundir import STATES, RunDir, RunLocked, describe_holder
from insr_hpc.runtime import Interrupted, RunEnv, select_device
from insr_hpc.workloads import WORKLOADS

__all__ = ["STATES", "Interrupted", "RunDir", "RunSpec", "check_resumable", "clear_outputs", "execute", "execute_pack",
           "read_state", "update_state"]


@dataclass
class RunSpec:
    run_id: str
    run_dir: str
    config: dict[str, Any]  # fully resolved config (plain data)
    overrides: dict[str, Any] = field(default_factory=dict)  # this sweep point's values

    def save(self) -> str:
        rd = RunDir(self.run_dir)
        os.makedirs(rd.path, exist_ok=True)
        _atomic_json(rd.spec, asdict(self))
        return rd.spec

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
    """The run's ``run.json`` (``{"state": "pending"}`` when there is none)."""
    return RunDir(run_dir).read_state()


def update_state(run_dir: str, **changes: Any) -> dict[str, Any]:
    """Merge changes into ``run.json``; a ``state`` change must be an allowed transition."""
    return RunDir(run_dir).update(**changes)


RUN_OUTPUTS = RunDir.OUTPUTS


def clear_outputs(run_dir: str) -> None:
    """Delete a run's results so it starts from step 0 (``output.overwrite=true``)."""
    RunDir(run_dir).clear_outputs()


def _reason(exc: BaseException, run_dir: str) -> str:
    """One line for run.json: the exception and, for I/O errors, the path it concerns
    (the run directory when the library that failed did not say which file)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, OSError):
        if exc.filename and str(exc.filename) not in text:
            text = f"{exc.strerror or text}: '{exc.filename}'"
        elif not exc.filename and run_dir not in text:
            text = f"{text} (writing under '{run_dir}')"
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def check_resumable(spec: RunSpec) -> None:
    """Refuse (InsrError naming the key) a spec whose existing store was written with a
    config that changes results. Reads the store's attributes only; writes nothing."""
    from insr_hpc.workloads import check_store_resumable

    check_store_resumable(RunDir(spec.run_dir).store, spec.config)


def execute(spec: RunSpec, env: RunEnv | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run one spec in this process: the one entry point of every backend and DDP rank.

    Holds the run's lock (rank 0; :class:`~insr_hpc.rundir.RunLocked` if another live
    process computes it), refuses a store written with a result-changing config before
    changing anything, records running → done | suspect | failed (or back to pending
    when interrupted) in ``run.json``. Returns the workload's summary; re-raises the
    workload's exception after recording it.
    """
    cfg = build_config(spec.config)
    if threads is None:
        threads = cfg.launch.threads_per_job
    torch.set_num_threads(max(1, threads))
    main = env is None or env.is_main
    rd = RunDir(spec.run_dir)

    def took_over(prev: dict) -> None:
        print(f"{spec.run_id}: took over the lock of {describe_holder(prev)}, which has gone", flush=True)

    with ExitStack() as stack:
        refused: BaseException | None = None
        if main:
            try:
                check_resumable(spec)
                stack.enter_context(rd.lock(command=f"insr-hpc run {spec.run_id}", on_takeover=took_over))
            except (InsrError, RunLocked) as exc:
                refused = exc
        if env is not None and env.world_size > 1 and env.reduce_scalar is not None:
            # every rank learns whether rank 0 may start, so none waits at a barrier alone
            if env.reduce_scalar(0.0 if refused is None else 1.0) > 0 and refused is None:
                raise RuntimeError(f"run {spec.run_id}: rank 0 refused to start it (see rank 0's output)")
        if refused is not None:
            raise refused
        if main:
            rd.transition("running", run_id=spec.run_id, host=socket.gethostname(), pid=os.getpid(),
                          started=time.time(), overrides=spec.overrides)
        return _execute(spec, cfg, rd, env)


def _execute(spec: RunSpec, cfg, rd: RunDir, env: RunEnv | None) -> dict[str, Any]:
    main = env is None or env.is_main
    try:
        env = env or RunEnv(device=select_device(cfg.device))
        summary = WORKLOADS.get(cfg.workload).run(cfg, spec.run_dir, env, spec.run_id)
    except (Interrupted, KeyboardInterrupt) as exc:
        if main:
            how = str(exc) or "interrupted (Ctrl-C)"
            rd.transition("pending", f"interrupted: {how}; submit again to resume", ended=time.time())
        raise
    except BaseException as exc:
        if main and not isinstance(exc, SystemExit):
            reason = _reason(exc, rd.path)
            rd.write_error(traceback.format_exc())
            _record_failure_in_store(rd, reason)
            rd.transition("failed", reason, ended=time.time())
        raise
    if main:  # a finished run whose results fail a guard rail is "suspect", never "done"
        suspect = summary.get("suspect") if isinstance(summary, dict) else None
        rd.transition("suspect" if suspect else "done", suspect, ended=time.time(),
                      summary=summary, world_size=env.world_size)
    return summary


def execute_pack(specs: list[RunSpec], threads: int | None = None) -> dict[str, str]:
    """Run k specs as one pack in this process (``launch.pack``; :mod:`insr_hpc.pde.pack`).

    Every run is locked, checked and recorded as if it ran alone (running → done |
    suspect | failed | cancelled, back to pending when interrupted); a run that fails
    or is locked by another process leaves the others going. Returns run_id → outcome
    (a state, or ``skipped`` when another live process holds its lock). Re-raises
    :class:`~insr_hpc.runtime.Interrupted` after recording the runs it stopped."""
    cfgs = [build_config(s.config) for s in specs]
    torch.set_num_threads(max(1, threads if threads is not None else cfgs[0].launch.threads_per_job))
    outcome: dict[str, str] = {}
    with ExitStack() as stack:
        members: list[tuple[RunSpec, object, RunDir]] = []
        for spec, cfg in zip(specs, cfgs, strict=True):
            rd = RunDir(spec.run_dir)
            try:
                check_resumable(spec)
                stack.enter_context(rd.lock(command=f"insr-hpc run {spec.run_id} (pack of {len(specs)})"))
            except RunLocked as exc:
                print(f"insr-hpc: run {spec.run_id} skipped: {exc}", flush=True)
                outcome[spec.run_id] = "skipped"
                continue
            except InsrError as exc:
                print(f"insr-hpc: run {spec.run_id} refused: {exc}", flush=True)
                outcome[spec.run_id] = rd.read_state().get("state", "pending")
                continue
            rd.transition("running", run_id=spec.run_id, host=socket.gethostname(), pid=os.getpid(),
                          started=time.time(), overrides=spec.overrides, pack=[s.run_id for s in specs],
                          cancel_requested=False)
            members.append((spec, cfg, rd))
        if not members:
            return outcome
        env = RunEnv(device=select_device(members[0][1].device))

        def ended(i: int, result) -> None:
            spec, _cfg, rd = members[i]
            if isinstance(result, str):  # dropped at a step boundary (cancelled)
                rd.transition("cancelled", result, ended=time.time())
            elif isinstance(result, BaseException):
                reason = _reason(result, rd.path)
                rd.write_error("".join(traceback.format_exception(result)))
                _record_failure_in_store(rd, reason)
                rd.transition("failed", reason, ended=time.time())
                print(f"insr-hpc: run {spec.run_id} failed: {reason}", flush=True)
            else:
                suspect = result.get("suspect") if isinstance(result, dict) else None
                rd.transition("suspect" if suspect else "done", suspect, ended=time.time(), summary=result,
                              world_size=1)
            outcome[spec.run_id] = rd.read_state().get("state", "failed")

        def should_drop(i: int) -> str | None:
            return "cancelled by user" if members[i][2].read_state().get("cancel_requested") else None

        workload = WORKLOADS.get(members[0][1].workload)
        try:
            workload.run_pack([(cfg, spec.run_dir, spec.run_id) for spec, cfg, _ in members], env, ended, should_drop)
        except (Interrupted, KeyboardInterrupt) as exc:
            how = str(exc) or "interrupted (Ctrl-C)"
            for spec, _cfg, rd in members:
                if spec.run_id not in outcome:
                    rd.transition("pending", f"interrupted: {how}; submit again to resume", ended=time.time())
                    outcome[spec.run_id] = "pending"
            raise
        except BaseException as exc:  # the pack itself broke: every run not yet ended failed with it
            for i, (spec, _cfg, _rd) in enumerate(members):
                if spec.run_id not in outcome:
                    ended(i, exc)
            if not isinstance(exc, Exception):
                raise
    return outcome


def _record_failure_in_store(rd: RunDir, reason: str) -> None:
    """Write the failure into the store's attributes too, so the store alone tells."""
    from insr_hpc.store import StepStore

    if not StepStore.exists(rd.store):
        return
    try:
        StepStore.open(rd.store).mark_failed(reason)
    except Exception:  # a damaged store or a full disk: run.json still records it
        pass

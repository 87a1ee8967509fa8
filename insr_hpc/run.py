"""The run layer: admit a plan's runs, then ``execute`` each one wherever it landed.

``execute(spec)`` is the one owner of a run's life: every backend and DDP rank calls
it, and it alone takes the run's lock, checks that the store may be resumed with this
config, and records the outcome (running → done | suspect | failed | cancelled, or
back to pending when stopped). Before any backend sees a run, :func:`admit` (called by
``insr-hpc run`` and ``submit``) refuses what cannot start without writing anything,
then writes each run's ``spec.json`` once and records it pending. Backends only move
specs, report engine states and cancel; when a job dies before its run could record an
end, they hand the engine's word to :meth:`RunDir.settle`.

The run directory's file names, state and lock are :class:`~insr_hpc.rundir.RunDir`'s.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import torch

from insr_hpc.errors import InsrError
from insr_hpc.rundir import STATES, RunDir, RunLocked, RunSpec, StateError, describe_holder
from insr_hpc.runtime import STOP, Interrupted, RunEnv, select_device
from insr_hpc.workloads import WORKLOADS, Ended, check_store_resumable, extends

__all__ = ["STATES", "Admission", "Interrupted", "RunDir", "RunSpec", "admit", "check_resumable", "execute",
           "execute_pack", "read_state", "spec_config", "update_state"]


def spec_config(spec: RunSpec):
    """The typed Config of ``spec``, made once per process: the plan's own object when
    the plan ran here; decoded without validating again when the config is the one the
    plan validated (its digest matches); validated when it is not (a spec made by hand,
    or a spec.json edited since)."""
    if spec.typed is None:
        from insr_hpc.catalog import build_config, decode_config

        spec.typed = decode_config(spec.config) if spec.validated else build_config(spec.config)
    return spec.typed


def read_state(run_dir: str) -> dict[str, Any]:
    """The run's ``run.json`` (``{"state": "pending"}`` when there is none)."""
    return RunDir(run_dir).read_state()


def update_state(run_dir: str, **changes: Any) -> dict[str, Any]:
    """Merge changes into ``run.json``; a ``state`` change must be an allowed transition."""
    return RunDir(run_dir).update(**changes)


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
    check_store_resumable(RunDir(spec.run_dir).store, spec.config)


def _extends(rd: RunDir, spec: RunSpec) -> bool:
    """Does ``spec`` ask for more steps than the run's store holds (time.steps raised),
    or must the run finish an extension a crash cut short?"""
    from insr_hpc.store import StepStore

    if StepStore.interrupted(rd.store):
        return True  # the run puts its store back and goes on
    if not StepStore.exists(rd.store):
        return False
    try:
        return extends(StepStore.read_attrs(rd.store).get("config", {}), spec.config)
    except InsrError:
        return False


# -- before any backend: admit ---------------------------------------------------------------
@dataclass
class Admission:
    """What :func:`admit` decided: the runs to hand to a backend, the runs another live
    process computes now (run id → its lock's holder) and the runs already done."""

    todo: list[RunSpec] = field(default_factory=list)
    busy: dict[str, dict] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)


def admit(specs: Sequence[RunSpec], backend: str | None) -> Admission:
    """Prepare a plan's runs for a backend (``None``: ``insr-hpc run``, in this process).

    First every refusal, with nothing written: a run directory or file that is a
    symbolic link, a store this config may not resume (InsrError naming the key). Then,
    for each run no live process holds: ``output.overwrite`` clears its outputs; its
    ``spec.json`` is written (the one write of it per submit); for a backend, a run
    already ``done`` is left alone (its spec rewritten only if it differs) unless
    ``time.steps`` was raised (it is then extended), and any other run is recorded
    ``pending`` on that backend, with its attempt count reset."""
    verdict = Admission()
    for spec in specs:
        rd = RunDir(spec.run_dir)
        rd.check_not_linked()
        holder = rd.holder()
        if holder is not None:
            verdict.busy[spec.run_id] = holder
        elif not spec_config(spec).output.overwrite:
            check_resumable(spec)
    for spec in specs:
        rd = RunDir(spec.run_dir)
        if spec.run_id in verdict.busy:
            continue
        with rd.try_lock(label=False) as mine:
            if mine is None:  # taken since we looked: another submit started it
                verdict.busy[spec.run_id] = rd.holder() or {}
                continue
            if spec_config(spec).output.overwrite:
                rd.clear_outputs()
            state = rd.read_state()
            if backend is not None and state.get("state") == "done" and not _extends(rd, spec):
                if not rd.spec_matches(spec):  # e.g. a damaged spec.json beside a done run
                    rd.write_spec(spec)
                verdict.done.append(spec.run_id)
                continue
            rd.write_spec(spec)
            if backend is not None:
                fresh = {"attempts": 0, "earlier_attempts": []} if state.get("state") in (None, "pending", "cancelled") \
                    else {}
                rd.transition("pending", None, run_id=spec.run_id, backend=backend, job_id=None,
                              cancel_requested=False, **fresh)
        verdict.todo.append(spec)
    return verdict


# -- wherever the run landed: execute ------------------------------------------------------------
def _running(spec: RunSpec, job: dict[str, Any] | None) -> dict[str, Any]:
    """run.json's changes as the run starts: this process, and the job computing the run
    (``job`` from the backend, e.g. its job id and node; else, under the local backend,
    the worker's own process group, which its ``submit`` signals)."""
    fields = {"state": "running", "reason": None, "run_id": spec.run_id, "host": socket.gethostname(),
              "pid": os.getpid(), "started": time.time(), "overrides": spec.overrides}
    if job is not None:
        fields.update(job)
    elif os.environ.get("INSR_HPC_BACKEND") == "local":
        fields.update(backend="local", job_id=str(os.getpgrp()))
    return fields


def execute(spec: RunSpec, env: RunEnv | None = None, threads: int | None = None,
            job: dict[str, Any] | None = None, watch_cancel: bool = False) -> dict[str, Any]:
    """Run one spec in this process: the one entry point of every backend and DDP rank.

    Rank 0 holds the run's lock (:class:`~insr_hpc.rundir.RunLocked` if another live
    process computes it) and, under it, refuses a store written with a result-changing
    config before changing anything; then records one more attempt (``job``: the
    backend's job id and host, else the local worker's) and running → done | suspect |
    failed (pending when interrupted; cancelled when a cancel was asked) in ``run.json``.
    A run whose cancel was asked before it started is recorded cancelled and not run;
    ``watch_cancel``: the run also looks for a cancel request at each step boundary and
    stops there (how the local backend cancels; Slurm and Ray stop the job instead).
    Returns the workload's summary; re-raises the workload's exception after recording it.
    """
    cfg = spec_config(spec)
    if threads is None:
        threads = cfg.launch.threads_per_job
    torch.set_num_threads(max(1, threads))
    main = env is None or env.is_main
    rd = RunDir(spec.run_dir)

    def took_over(prev: dict) -> None:
        print(f"{spec.run_id}: took over the lock of {describe_holder(prev)}, which has gone", flush=True)

    with ExitStack() as stack:
        refused: BaseException | None = None
        cancelled = False
        if main:
            try:
                stack.enter_context(rd.lock(command=f"insr-hpc run {spec.run_id}", on_takeover=took_over))
                check_resumable(spec)
                cancelled = rd.cancel_requested()  # cancelled while queued: never starts
            except (InsrError, RunLocked) as exc:
                refused = exc
        if env is not None and env.world_size > 1 and env.reduce_scalar is not None:
            # every rank learns whether rank 0 may start, so none waits at a barrier alone
            stop = refused is not None or cancelled
            if env.reduce_scalar(1.0 if stop else 0.0) > 0 and not main:
                raise RuntimeError(f"run {spec.run_id}: rank 0 refused to start it (see rank 0's output)")
        if refused is not None:
            raise refused
        if main:
            if cancelled:
                rd.transition("cancelled", "cancelled by user before it started", ended=time.time())
                return {}
            rd.begin_attempt(**_running(spec, job))
            if watch_cancel:
                STOP.poll = lambda: "cancelled by user" if rd.cancel_requested() else None
        try:
            return _execute(spec, cfg, rd, env)
        finally:
            STOP.poll = None


def _stopped(rd: RunDir, exc: BaseException) -> None:
    """Record a run stopped at a step boundary: cancelled when asked, else pending."""
    if rd.cancel_requested():
        rd.transition("cancelled", "cancelled by user", ended=time.time())
    else:
        how = str(exc) or "interrupted (Ctrl-C)"
        rd.transition("pending", f"interrupted: {how}; submit again to resume", ended=time.time())


def _failed(rd: RunDir, exc: BaseException, text: str | None = None) -> str:
    reason = _reason(exc, rd.path)
    rd.write_error(text or "".join(traceback.format_exception(exc)))
    _record_failure_in_store(rd, reason)
    rd.transition("failed", reason, ended=time.time())
    return reason


def _finished(rd: RunDir, summary: Any, world_size: int) -> None:
    """A finished run whose results fail a guard rail is ``suspect``, never ``done``. (A
    cancel recorded while its last step was computed stands: the user's word.)"""
    suspect = summary.get("suspect") if isinstance(summary, dict) else None
    try:
        rd.transition("suspect" if suspect else "done", suspect, ended=time.time(), summary=summary,
                      world_size=world_size)
    except StateError:
        if rd.read_state().get("state") != "cancelled":
            raise
        rd.update(summary=summary, world_size=world_size)


def _execute(spec: RunSpec, cfg, rd: RunDir, env: RunEnv | None) -> dict[str, Any]:
    main = env is None or env.is_main
    try:
        env = env or RunEnv(device=select_device(cfg.device))
        summary = WORKLOADS.get(cfg.workload).run(cfg, spec.run_dir, env, spec.run_id)
    except (Interrupted, KeyboardInterrupt) as exc:
        if main:
            _stopped(rd, exc)
        raise
    except BaseException as exc:
        if main and not isinstance(exc, SystemExit):  # a SystemExit is the launcher's to record
            _failed(rd, exc, traceback.format_exc())
        raise
    if main:
        _finished(rd, summary, env.world_size)
    return summary


def execute_pack(specs: list[RunSpec], threads: int | None = None,
                 job: dict[str, Any] | None = None) -> dict[str, str]:
    """Run k specs as one pack in this process (``launch.pack``; :mod:`insr_hpc.pde.pack`).

    Every run is locked, checked and recorded as if it ran alone (running → done |
    suspect | failed | cancelled, back to pending when interrupted); a run that fails
    or is locked by another process leaves the others going. Returns run_id → outcome
    (a state, or ``skipped`` when another live process holds its lock). Re-raises
    :class:`~insr_hpc.runtime.Interrupted` after recording the runs it stopped."""
    cfgs = [spec_config(s) for s in specs]
    torch.set_num_threads(max(1, threads if threads is not None else cfgs[0].launch.threads_per_job))
    outcome: dict[str, str] = {}
    with ExitStack() as stack:
        members: list[tuple[RunSpec, object, RunDir]] = []
        for spec, cfg in zip(specs, cfgs, strict=True):
            rd = RunDir(spec.run_dir)
            try:
                stack.enter_context(rd.lock(command=f"insr-hpc run {spec.run_id} (pack of {len(specs)})"))
                check_resumable(spec)
            except RunLocked as exc:
                print(f"insr-hpc: run {spec.run_id} skipped: {exc}", flush=True)
                outcome[spec.run_id] = "skipped"
                continue
            except InsrError as exc:
                print(f"insr-hpc: run {spec.run_id} refused: {exc}", flush=True)
                outcome[spec.run_id] = rd.read_state().get("state", "pending")
                continue
            rd.begin_attempt(**_running(spec, job), pack=[s.run_id for s in specs])
            members.append((spec, cfg, rd))
        if not members:
            return outcome
        env = RunEnv(device=select_device(members[0][1].device))

        def ended(i: int, how: Ended) -> None:
            spec, _cfg, rd = members[i]
            if how.dropped is not None:
                rd.transition("cancelled", how.dropped, ended=time.time())
            elif how.error is not None:
                reason = _failed(rd, how.error)
                print(f"insr-hpc: run {spec.run_id} failed: {reason}", flush=True)
            else:
                _finished(rd, how.summary, 1)
            outcome[spec.run_id] = rd.read_state().get("state", "failed")

        def should_drop(i: int) -> str | None:
            return "cancelled by user" if members[i][2].cancel_requested() else None

        workload = WORKLOADS.get(members[0][1].workload)
        try:
            workload.run_pack([(cfg, spec.run_dir, spec.run_id) for spec, cfg, _ in members], env, ended, should_drop)
        except (Interrupted, KeyboardInterrupt) as exc:
            for spec, _cfg, rd in members:
                if spec.run_id not in outcome:
                    _stopped(rd, exc)
                    outcome[spec.run_id] = rd.read_state().get("state", "pending")
            raise
        except BaseException as exc:  # the pack itself broke: every run not yet ended failed with it
            for i, (spec, _cfg, _rd) in enumerate(members):
                if spec.run_id not in outcome:
                    ended(i, Ended(error=exc))
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

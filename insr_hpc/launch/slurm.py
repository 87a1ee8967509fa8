"""Slurm through submitit: a sweep is job arrays, preemption requeues and resumes.

Resources come from ``launch.slurm`` (and ``launch.ddp`` for data-parallel runs: one
task per rank). Logs and submitit's pickles live in ``<sweep>/slurm/`` (created
``0700``): a job unpickles the small submission file submitit wrote there (the job's
callable and the path of its run's ``spec.json``), so whoever can write that directory
can run code as the user; the submitting side never unpickles anything from it (it
reads each run's outcome from ``run.json``). A sweep larger
than the cluster's ``MaxArraySize`` is split into several arrays (:func:`plan_arrays`),
chained so that ``array_parallelism`` caps the whole sweep. On USR2 (preemption with
``preempt_send_user_signal``, ``signal_delay_s`` before the time limit, or a signal to
the batch shell, which the sbatch script passes on to the step) submitit calls
:meth:`RunJob.checkpoint`, which hands back the same RunSpec; the requeued job resumes
from the store's last committed step, so no committed step is computed twice and none
is lost. A SIGTERM that comes with a requeue (``scontrol requeue``, preemption without
the user signal) is told apart from a cancel by asking Slurm. Job states come from
``squeue`` (no accounting database needed).
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from insr_hpc.errors import InsrError
from insr_hpc.launch.base import BACKENDS, Backend
from insr_hpc.run import execute, spec_config
from insr_hpc.rundir import FINAL, RunDir, RunLocked, RunSpec

try:  # submitit is an optional dependency (the ``cluster`` extra)
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - reported when the backend is used
    Checkpointable = object  # type: ignore[assignment,misc]

POLL_S = 0.5
SQUEUE_EVERY = 6  # polls


def executor_parameters(launch_cfg, job_name: str = "insr-hpc") -> dict[str, Any]:
    """SlurmExecutor parameters (sbatch options) for one run of ``launch_cfg``: its nodes
    and tasks per node are ``launch.ddp.nodes`` and ``nproc_per_node`` (one task per rank)."""
    sc, ddp = launch_cfg.slurm, launch_cfg.ddp
    params: dict[str, Any] = {
        "job_name": job_name,
        "time": sc.time_min,
        "nodes": ddp.nodes,
        "ntasks_per_node": ddp.nproc_per_node,
        "cpus_per_task": sc.cpus_per_task,
        "array_parallelism": sc.array_parallelism,
        "signal_delay_s": sc.signal_delay_s,
        "stderr_to_stdout": True,
    }
    optional = {
        "partition": sc.partition,
        "gpus_per_node": sc.gpus_per_node or None,
        "mem": f"{int(sc.mem_gb * 1024)}MB" if sc.mem_gb else None,
        "account": sc.account,
        "qos": sc.qos,
        "setup": list(sc.setup) or None,
    }
    params.update({k: v for k, v in optional.items() if v is not None})
    extra = {}
    for line in sc.extra_sbatch:
        key, sep, value = line.lstrip("-").partition("=")
        extra[key.strip()] = value.strip() if sep else True  # True: a bare flag (--exclusive)
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_text(launch_cfg, folder: str, n_runs: int = 1, command: str = "python -u -m insr_hpc.slurm_entry FOLDER") -> str:
    """The sbatch script submitted for ``n_runs`` runs (a job array when > 1).

    Golden-file tested, so a change to what reaches a cluster shows up as a diff."""
    from submitit.slurm.slurm import _make_sbatch_string

    params = executor_parameters(launch_cfg)
    if n_runs > 1:
        params["map_count"] = n_runs
    return forward_batch_signals(_make_sbatch_string(command=command, folder=folder, **params))


_FORWARD = """\
# A signal to the batch shell (scancel --signal=USR2 --batch) goes on to the job step,
# where submitit checkpoints and requeues; a bare bash would die of it (job FAILED).
# srun runs in the background so that bash runs the trap at once, not after srun.
{srun} &
SRUN_PID=$!
trap 'kill -USR2 "$SRUN_PID" 2>/dev/null' USR2
while :; do
    wait "$SRUN_PID"; rc=$?
    kill -0 "$SRUN_PID" 2>/dev/null || break
done
exit "$rc"
"""


def forward_batch_signals(text: str) -> str:
    """Rewrite submitit's sbatch text so that USR2 to the batch shell reaches the step."""
    lines = text.split("\n")
    idx = max(i for i, line in enumerate(lines) if line.startswith("srun "))
    lines[idx] = _FORWARD.format(srun=lines[idx]).rstrip("\n")
    return "\n".join(lines)


def _executor_class():
    import submitit

    import submitit.slurm.slurm as submitit_slurm

    class Executor(submitit.SlurmExecutor):
        """submitit's executor, with the batch shell passing USR2 on to the step."""

        def _internal_process_submissions(self, delayed_submissions):
            # For a job array submitit builds a fresh executor by the module-level name
            # SlurmExecutor; make that this class for the call, so arrays get the same
            # sbatch text and command as single jobs.
            plain = submitit_slurm.SlurmExecutor
            submitit_slurm.SlurmExecutor = type(self)
            try:
                return super()._internal_process_submissions(delayed_submissions)
            finally:
                submitit_slurm.SlurmExecutor = plain

        @property
        def _submitit_command_str(self) -> str:  # USR2 caught from the start (insr_hpc/slurm_entry.py)
            return " ".join([self.python, "-u -m insr_hpc.slurm_entry", shlex.quote(str(self.folder))])

        def _make_submission_file_text(self, command: str, uid: str) -> str:
            return forward_batch_signals(super()._make_submission_file_text(command, uid))

    return Executor


def scontrol_config() -> dict[str, str]:
    """``scontrol show config`` as key → value (empty when no controller answers)."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    conf = {}
    for line in out.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip()
    return conf


def cluster_max_array_size(default: int = 1001) -> int:
    """The cluster's MaxArraySize: an array holds at most this many tasks (0 … size-1)."""
    value = scontrol_config().get("MaxArraySize", "")
    return int(value) if value.isdigit() and int(value) > 0 else default


@dataclass(frozen=True)
class ArrayPlan:
    """One job array of a sweep: runs ``start:stop``, at most ``throttle`` at once,
    started after array number ``after`` (index into the plan) has ended, if any."""

    start: int
    stop: int
    throttle: int
    after: int | None


def plan_arrays(n_runs: int, max_size: int, parallelism: int) -> list[ArrayPlan]:
    """Split ``n_runs`` into arrays of at most ``max_size`` tasks, ``parallelism`` at once overall.

    The arrays are laid out in L = min(#arrays, ceil(parallelism / max_size)) lanes;
    the parallelism is shared out over the lanes (each lane's share ≤ max_size, as an
    array's ``%k`` cannot exceed its size usefully) and the arrays of a lane run one
    after another (``--dependency=afterany:<previous array of the lane>``). So at any
    time at most one array per lane runs, with at most its lane's share of tasks: the
    sum never exceeds ``parallelism``. With parallelism ≤ max_size (the usual case)
    there is one lane: arrays in sequence, each ``%parallelism``."""
    if n_runs <= 0:
        return []
    chunks = [(a, min(a + max_size, n_runs)) for a in range(0, n_runs, max_size)]
    lanes = max(1, min(len(chunks), math.ceil(parallelism / max_size)))
    share = [parallelism // lanes + (1 if j < parallelism % lanes else 0) for j in range(lanes)]
    plans = []
    for i, (a, b) in enumerate(chunks):
        lane = i % lanes
        plans.append(ArrayPlan(a, b, max(1, min(share[lane], b - a)), i - lanes if i >= lanes else None))
    return plans


class JobTerminated(SystemExit):
    """SIGTERM reached the run: scancel, or the time limit / a preemption without USR2."""


class JobRequeued(SystemExit):
    """SIGTERM reached the run because Slurm is requeueing its job (``scontrol requeue``,
    preemption in REQUEUE mode): the next instance resumes from the store."""


def _being_requeued() -> bool:
    """Is this job's SIGTERM part of a requeue? Slurm has then already counted the
    restart: ``Restarts`` in ``scontrol show job`` exceeds ``SLURM_RESTART_COUNT``
    (what it was when this instance started), or the job is already back to PENDING."""
    job_id = os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return False
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    fields = dict(re.findall(r"(\w+)=(\S*)", out))
    restarts = fields.get("Restarts", "0")
    started_at = os.environ.get("SLURM_RESTART_COUNT", "0")
    if restarts.isdigit() and started_at.isdigit() and int(restarts) > int(started_at):
        return True
    return fields.get("JobState") in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "PREEMPTED")


class RunJob(Checkpointable):
    """What each Slurm task executes: the run whose ``spec.json`` path it is given (rank
    ``SLURM_PROCID`` of a DDP run).

    Checkpointable: on USR2 submitit calls ``checkpoint``, which records the preemption
    and resubmits this object with the same path; submitit requeues the job and exits;
    the store holds everything done so far. SIGTERM (which submitit would ignore) ends the run at once,
    so ``scancel`` stops it now rather than after Slurm's KillWait."""

    def __call__(self, spec_path: str) -> str:
        import submitit

        from insr_hpc.launch import ddp

        spec = RunSpec.load(spec_path)
        cfg = spec_config(spec)
        job = submitit.JobEnvironment()
        self._install_signal_handlers()
        if os.environ.pop("INSR_EARLY_USR2", None):  # arrived before submitit's handler: deliver it now
            signal.raise_signal(signal.SIGUSR2)
        info = ddp.detect()
        env = ddp.init(info, cfg.device, cfg.launch.ddp.backend, progress=False)
        threads = int(os.environ.get("SLURM_CPUS_PER_TASK", cfg.launch.threads_per_job))
        try:  # a requeued job (preempted, or its node died) comes back here: one more attempt
            execute(spec, env=env, threads=threads,
                    job={"backend": "slurm", "job_id": str(job.job_id), "host": job.hostname})
        except RunLocked:  # another live process computes this run: leave its state alone
            return "skipped"
        except SystemExit as exc:
            if env.is_main:
                _record_exit(RunDir(spec.run_dir), exc)
            raise
        finally:
            ddp.shutdown()
        return "done"

    def checkpoint(self, spec_path: str):  # type: ignore[override]
        """Called by submitit on USR2 (rank 0), before it requeues the job: record the
        preemption first, so run.json is right even when the signal lands before
        ``__call__`` has started (a time-limit warning early in the job)."""
        self._requeueing = True
        try:  # a signal just after the end leaves the outcome alone
            RunDir(os.path.dirname(os.path.abspath(spec_path))).settle(
                "", stopping=PREEMPTED_USR2, unfinished=("pending", "running"))
        except OSError:
            pass
        return super().checkpoint(spec_path)

    def _install_signal_handlers(self) -> None:
        preempted = signal.getsignal(signal.SIGUSR2)  # submitit's checkpoint-and-requeue
        self._requeueing = False

        def on_usr2(signum, frame):
            self._requeueing = True  # the requeue's own SIGTERM must not cut the handler short
            if not callable(preempted):
                return
            try:
                preempted(signum, frame)
            except subprocess.CalledProcessError:
                # submitit's `scontrol requeue` can be killed by the requeue it asked for
                # (Slurm signals every process of the step, that one too) before it
                # returns: the job is requeued all the same.
                if _being_requeued():
                    raise JobRequeued(143) from None
                raise

        def on_term(signum, frame):
            if self._requeueing:
                return  # submitit's own requeue (after USR2): its handler exits
            if _being_requeued():
                self._requeueing = True
                raise JobRequeued(143)
            raise JobTerminated(143)

        signal.signal(signal.SIGUSR2, on_usr2)
        signal.signal(signal.SIGTERM, on_term)


def _record_exit(rd: RunDir, exc: SystemExit) -> None:
    """How a job that exits early leaves its run (``execute`` records no SystemExit):
    cancelled when asked, failed when Slurm terminated it, else pending (requeued)."""
    if isinstance(exc, JobTerminated):
        rd.settle("terminated by Slurm (SIGTERM); submit again to resume from the store",
                  cancelled=CANCELLED_SCANCEL)
    elif isinstance(exc, JobRequeued):
        rd.settle("", cancelled=CANCELLED_SCANCEL,
                  stopping="preempted: requeued by Slurm (SIGTERM), resumes from its store")
    else:
        rd.settle("", cancelled=CANCELLED_SCANCEL, stopping=PREEMPTED_USR2)


CANCELLED_SCANCEL = "cancelled by user (scancel)"
PREEMPTED_USR2 = "preempted: USR2 (preemption, time limit or signal), requeued; resumes from its store"


def squeue_states(job_ids: Sequence[str]) -> dict[str, str]:
    """Slurm state (RUNNING, PENDING, COMPLETED, …) of each job id Slurm still knows
    ({} when squeue could not be asked: see :func:`squeue_answer`)."""
    return squeue_answer(job_ids) or {}


def squeue_answer(job_ids: Sequence[str]) -> dict[str, str] | None:
    """Slurm state of each job id Slurm still knows, or None when squeue gave no answer
    (not installed, timed out, controller unreachable): then absence says nothing.

    Array tasks are listed one per line (``-r``); finished jobs stay visible for
    ``MinJobAge`` seconds. Without accounting (no slurmdbd) this is the only source."""
    if not job_ids:
        return {}
    base_ids = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "--states=all", "-o", "%i %T", "-j", ",".join(base_ids)],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:  # "none of these is known" is an answer
        return None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


GONE = "GONE"  # job_states: squeue answered and no longer knows the job
ENDED = ("COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", GONE)


def compress_job_ids(job_ids) -> list[str]:
    """``["7_0", "7_1", "7_2", "7_5", "9"]`` → ``["7_[0-2,5]", "9"]``: one scancel
    argument (one controller RPC) per array rather than per task."""
    arrays: dict[str, list[int]] = {}
    plain = []
    for j in job_ids:
        head, sep, task = str(j).partition("_")
        if sep and task.isdigit():
            arrays.setdefault(head, []).append(int(task))
        else:
            plain.append(str(j))
    out = []
    for head, tasks in arrays.items():
        tasks = sorted(set(tasks))
        ranges, lo = [], tasks[0]
        for prev, cur in zip(tasks, tasks[1:] + [None]):
            if cur != prev + 1 if cur is not None else True:
                ranges.append(f"{lo}-{prev}" if prev > lo else f"{lo}")
                lo = cur
        out.append(f"{head}_[{','.join(ranges)}]")
    return out + plain


@BACKENDS.register("slurm")
class SlurmBackend(Backend):
    name = "slurm"
    can_detach = True  # `submit --no-wait` returns after sbatch

    def available(self, detach: bool = False) -> None:
        """sbatch/squeue on PATH, submitit importable, the partition exists, GPUs exist
        when asked for: refused with one line before any file is written. (A detached
        sweep needs nothing more: Slurm holds the jobs.)"""
        missing = [cmd for cmd in ("sbatch", "squeue", "scontrol", "sinfo") if shutil.which(cmd) is None]
        if missing:
            raise InsrError(
                f"launch.backend: 'slurm' needs {', '.join(missing)} on PATH (run on a Slurm login node, "
                "or install the client: apt-get install slurm-client; a test cluster: slurm/dev-cluster.sh start)"
            )
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise InsrError("launch.backend: 'slurm' needs submitit (pip install 'insr-hpc[cluster]')") from None
        sc = self.launch.slurm
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%R|%G"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InsrError(f"launch.backend: 'slurm': sinfo failed: {exc}") from None
        if out.returncode != 0:
            last = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise InsrError(f"launch.backend: 'slurm': no Slurm controller answers sinfo ({last[:200]})")
        gres: dict[str, set[str]] = {}
        for line in out.stdout.splitlines():
            part, _, g = line.strip().partition("|")
            if part:
                gres.setdefault(part, set()).add(g)
        if sc.partition is not None and sc.partition not in gres:
            raise InsrError(
                f"launch.slurm.partition: no partition '{sc.partition}' on this cluster "
                f"(partitions: {', '.join(sorted(gres)) or 'none'})"
            )
        if sc.gpus_per_node > 0:
            pool = gres.get(sc.partition) if sc.partition else set().union(*gres.values()) if gres else set()
            if not any(re.search(r"gpu", g or "") for g in pool):
                where = f"partition '{sc.partition}'" if sc.partition else "this cluster"
                raise InsrError(
                    f"launch.slurm.gpus_per_node: {sc.gpus_per_node} requested but the nodes of {where} have no GPUs "
                    "(sinfo %G shows no gpu GRES); set launch.slurm.gpus_per_node=0 or pick a GPU partition"
                )

    def _executor(self, sweep_dir: str, name: str):
        folder = os.path.join(sweep_dir, "slurm")
        os.makedirs(folder, mode=0o700, exist_ok=True)  # submitit's pickles: see the module's docstring
        ex = _executor_class()(folder=folder, max_num_timeout=3)
        ex.update_parameters(**executor_parameters(self.launch, job_name=name))
        return ex

    def max_array_size(self) -> int:
        """Tasks per array: the cluster's MaxArraySize, lowered by ``launch.slurm.max_array_size``."""
        cluster = cluster_max_array_size()
        own = self.launch.slurm.max_array_size
        return min(cluster, own) if own else cluster

    def _submit_jobs(self, specs: Sequence[RunSpec], sweep_dir: str) -> dict[str, Any]:
        name = f"insr-{os.path.basename(sweep_dir)}"
        executor = self._executor(sweep_dir, name)
        base = executor_parameters(self.launch, job_name=name)
        plans = plan_arrays(len(specs), self.max_array_size(), self.launch.slurm.array_parallelism)
        self.arrays: list[str] = []  # array job ids of this submission, in plan order
        jobs: list[Any] = []
        for plan in plans:
            extra = dict(base.get("additional_parameters", {}))
            if plan.after is not None:
                extra["dependency"] = f"afterany:{self.arrays[plan.after]}"
            executor.update_parameters(array_parallelism=plan.throttle, additional_parameters=extra or None)
            chunk = executor.map_array(RunJob(), [RunDir(s.run_dir).spec for s in specs[plan.start : plan.stop]])
            jobs += chunk
            self.arrays.append(str(chunk[0].job_id).split("_")[0])
        for spec, job in zip(specs, jobs, strict=True):  # for status and cancel until the job says more
            RunDir(spec.run_dir).update(backend="slurm", job_id=str(job.job_id))
        return {spec.run_id: job for spec, job in zip(specs, jobs, strict=True)}

    def submit(self, specs, sweep_dir, progress=True, wait=True):
        jobs = self._submit_jobs(specs, sweep_dir)
        if not wait:
            return {s.run_id: "submitted" for s in specs}
        by_id = {s.run_id: s for s in specs}
        attempts = dict.fromkeys(by_id, 0)
        results: dict[str, str] = {}
        missing: dict[str, int] = {}
        polls = 0
        while jobs:
            time.sleep(POLL_S)
            polls += 1
            # Result files are checked every poll (a stat); squeue, which costs the
            # controller an RPC, only every SQUEUE_EVERY polls, to notice vanished jobs.
            # None (no squeue answer this time) waits: a controller restart must not fail runs
            live = squeue_answer([str(j.job_id) for j in jobs.values()]) if polls % SQUEUE_EVERY == 0 else None
            for run_id, job in list(jobs.items()):
                spec = by_id[run_id]
                outcome = self._outcome(job, spec, live, missing)
                if outcome is None:
                    continue
                del jobs[run_id]
                if outcome == "failed" and attempts[run_id] < self.launch.max_retries:
                    attempts[run_id] += 1
                    RunDir(spec.run_dir).update(state="pending", reason=None, retries=attempts[run_id])
                    jobs.update(self._submit_jobs([spec], sweep_dir))
                    continue
                results[run_id] = outcome
                if progress:
                    print(f"{run_id}: {outcome} (slurm job {job.job_id})", flush=True)
        return results

    @staticmethod
    def _outcome(job, spec: RunSpec, live: dict[str, str] | None, missing: dict[str, int]) -> str | None:
        """Final state of one job, or None while Slurm still runs (or requeued) it. Read
        from run.json: submitit's result file only says the job ended (never unpickled)."""
        rd = RunDir(spec.run_dir)
        if job.paths.result_pickle.exists():
            state = rd.read_state().get("state", "pending")
            if state in FINAL:
                return state
            if rd.holder() is not None:  # another live process computes the run
                return "skipped"
            return rd.settle(f"slurm job {job.job_id} ended without recording an outcome; see {job.paths.stdout}",
                             cancelled=CANCELLED_SCANCEL, unfinished=("pending", "running"))
        if live is None:
            return None
        slurm_state = live.get(str(job.job_id))
        if slurm_state is None or slurm_state in ENDED:
            # Gone without a result: give the result file a moment (shared filesystems lag).
            missing[spec.run_id] = missing.get(spec.run_id, 0) + 1
            if missing[spec.run_id] < 3:
                return None
            reason = f"slurm job {job.job_id} ended ({slurm_state or 'unknown to squeue'}) without a result; see {job.paths.stdout}"
            return rd.settle(reason, cancelled=CANCELLED_SCANCEL, unfinished=("pending", "running"))
        missing.pop(spec.run_id, None)
        return None

    def states(self, runs: Sequence[dict]) -> dict[str, str]:
        ids = {st["run_id"]: str(st["job_id"]) for st in runs if st.get("job_id")}
        live = squeue_answer(list(ids.values()))
        if live is None:
            return {}
        return {run_id: live.get(j, GONE) for run_id, j in ids.items()}

    def ended_unrecorded(self, run: dict, engine_state: str) -> str | None:
        """A run that run.json calls pending/running whose job has ended (or that Slurm
        no longer knows) without recording an end: e.g. scancel'ed, or killed, before
        its job step could write run.json."""
        if engine_state not in ENDED:
            return None
        what = "no longer known to Slurm" if engine_state == GONE else f"ended {engine_state}"
        return f"slurm job {run.get('job_id')} {what} without recording an end; submit again to resume"

    def cancel(self, runs):
        ids = {st.get("run_id"): str(st["job_id"]) for st in runs if st.get("job_id") and st.get("state") in ("pending", "running")}
        if not ids:
            return []
        for st in runs:
            if st.get("run_id") in ids:  # read by the job as it exits: it was cancelled, not failed
                RunDir(st["run_dir"]).request_cancel()
        try:
            out = subprocess.run(["scancel", *compress_job_ids(ids.values())], capture_output=True, text=True, timeout=120)
        except OSError as exc:
            raise InsrError(f"cancel: cannot run scancel: {exc}") from None
        if out.returncode != 0 and out.stderr.strip():
            print(f"insr-hpc: scancel: {out.stderr.strip()}")
        return [st["run_id"] for st in runs
                if st.get("run_id") in ids and RunDir(st["run_dir"]).cancel_if_live(CANCELLED_SCANCEL)]

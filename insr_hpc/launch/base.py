"""The Backend interface: move RunSpecs to where they execute, report states, cancel.

A backend is one module that subclasses :class:`Backend` and registers itself
(``@BACKENDS.register("name")``), plus the line declaring it below
(``BACKENDS.declare("name", "insr_hpc.launch.module:Class")``: the module is imported
when the backend is first asked for, so naming one imports nothing); what it can do beyond the four methods every backend
has is declared by class attributes (``can_detach``, ``can_pack``), never probed.

A backend never touches numerics, resume logic or a run's outcome: ``run.admit`` has
written each spec and recorded it pending before ``submit`` is called, ``run.execute``
records how the run ended, and when the engine reports a job gone without that record
the backend hands the engine's word to :meth:`RunDir.settle <insr_hpc.rundir.RunDir.settle>`.
A cancel is asked through :meth:`RunDir.request_cancel <insr_hpc.rundir.RunDir.request_cancel>`
and carried out by the backend's engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from insr_hpc.registry import Registry
from insr_hpc.rundir import RunSpec

BACKENDS: Registry = Registry("backend", "launch.backend")
BACKENDS.default = "local"
BACKENDS.declare("local", "insr_hpc.launch.local:LocalBackend")
BACKENDS.declare("ray", "insr_hpc.launch.ray:RayBackend")
BACKENDS.declare("slurm", "insr_hpc.launch.slurm:SlurmBackend")


class SubmitInterrupted(Exception):
    """SIGTERM/SIGINT stopped a waiting ``submit``: its runs were stopped or never started
    (state ``pending``). ``results`` holds the outcomes of the runs that ended."""

    def __init__(self, signum: int, results: dict[str, str]):
        self.signum = signum
        self.results = results
        super().__init__(f"stopped by signal {signum}")


class Backend(ABC):
    """Where runs execute. Subclasses implement the four abstract methods."""

    name = "base"
    can_detach = False  # True: submit(..., wait=False) queues the runs and returns
    can_pack = False  # True: runs several packed runs (launch.pack > 1) in one job

    def __init__(self, launch_cfg):
        self.launch = launch_cfg

    @abstractmethod
    def available(self, detach: bool = False) -> None:
        """Refuse, before anything is written, a backend that cannot run here.

        Raises :class:`~insr_hpc.errors.InsrError` with one line naming what is missing
        and how to get it (a command not on PATH, a package not installed, an address
        that does not answer, a partition that does not exist). ``detach``: also refuse
        when the runs could not outlive this process (``submit --no-wait``). Called by
        ``submit`` after planning and before any run directory or file is created."""

    @abstractmethod
    def submit(self, specs: Sequence[RunSpec], sweep_dir: str, progress: bool = True,
               wait: bool = True) -> dict[str, str]:
        """Run ``specs`` (admitted: spec.json written, state pending) and wait for them.
        Returns run_id → final state (``skipped`` when another process held a run).
        With ``can_detach`` and ``wait=False``: queue them and return."""

    @abstractmethod
    def states(self, runs: Sequence[dict]) -> dict[str, str]:
        """The engine's own state of each run's job (run_id → e.g. RUNNING, or ``GONE``
        when the engine no longer knows it); runs it cannot ask about are left out.
        ``runs``: run.json contents with ``run_dir`` and ``run_id``."""

    @abstractmethod
    def cancel(self, runs: Sequence[dict]) -> list[str]:
        """Cancel the unfinished runs given (run.json contents with ``run_dir``): record
        the request (:meth:`RunDir.request_cancel`) and stop their jobs. Returns the run
        ids cancelled."""

    def ended_unrecorded(self, run: dict, engine_state: str) -> str | None:
        """Why a run that run.json calls pending/running has in fact ended, given the
        engine's state of its job (for ``status``, which only reads), or None."""
        return None

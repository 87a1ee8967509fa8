"""The Backend interface: move RunSpecs to where they execute, report states, cancel.

A backend never touches numerics or resume logic (that lives in ``run.execute`` and the
store), so a spec behaves the same on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence

from insr_hpc.registry import Registry
from insr_hpc.run import RunSpec

BACKENDS: Registry = Registry("backend", "launch.backend")
BACKENDS.default = "local"


class SubmitInterrupted(Exception):
    """SIGTERM/SIGINT stopped a waiting ``submit``: its runs were stopped or never started
    (state ``pending``). ``results`` holds the outcomes of the runs that ended."""

    def __init__(self, signum: int, results: dict[str, str]):
        self.signum = signum
        self.results = results
        super().__init__(f"stopped by signal {signum}")


class Backend:
    """Subclasses implement ``submit`` (and may implement ``cancel``)."""

    name = "base"
    can_detach = False  # True: submit(..., wait=False) queues the runs and returns

    def __init__(self, launch_cfg):
        self.launch = launch_cfg

    def check(self) -> None:
        """Refuse, before anything is written, a backend that cannot run here.

        Raises :class:`~insr_hpc.errors.InsrError` with one line naming what is missing
        and how to get it (a command not on PATH, a package not installed, an address
        that does not answer, a partition that does not exist). Called by ``submit``
        after planning and before any run directory, spec or state file is created."""

    def check_detach(self) -> None:
        """Like :meth:`check`, for ``submit --no-wait`` (called after it): refuse when the
        runs could not outlive this process (e.g. no cluster service to hand them to)."""

    def submit(self, specs: Sequence[RunSpec], sweep_dir: str, progress: bool = True) -> dict[str, str]:
        """Run ``specs`` and wait for them. Returns run_id → final state (done / failed).

        Backends with ``can_detach`` also accept ``wait=False``: queue and return."""
        raise NotImplementedError

    def cancel(self, states: Sequence[dict]) -> list[str]:
        """Cancel the runs whose ``run.json`` states are given. Returns the run ids cancelled."""
        raise NotImplementedError(f"backend '{self.name}' cannot cancel")

    def job_states(self, states: Sequence[dict]) -> dict[str, str]:
        """The engine's own state of each run's job (run_id → e.g. RUNNING); {} if unknown."""
        return {}

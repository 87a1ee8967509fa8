"""Where a run executes: device choice, data-parallel context, provenance."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
import torch


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else is taken literally."""
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local % torch.cuda.device_count()}")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from insr_hpc.errors import ConfigError

        raise ConfigError("device", f"'{name}' requested but CUDA is not available on {platform.node()}")
    return dev


class Interrupted(BaseException):
    """SIGTERM/SIGINT reached a run: it stopped at a step boundary (everything before it
    committed); the run goes back to ``pending`` and resumes when submitted again."""


class _StopRequest:
    """Set by the signal handlers of :func:`install_stop_handlers`; read at step boundaries."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        # Asked at each step boundary (rank 0): a reason to stop (e.g. the run's cancel
        # request, set by ``run.execute``), or None to go on.
        self.poll: Callable[[], str | None] | None = None

    def reason(self) -> str | None:
        """Why the run should stop now: a signal, or what ``poll`` says; None to go on."""
        if self.event.is_set():
            return f"stopped by {signal.Signals(self.signum).name}" if self.signum else "stopped by a stop request"
        return self.poll() if self.poll is not None else None

    def request(self, signum: int) -> None:
        self.signum = signum
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


STOP = _StopRequest()


def install_stop_handlers(announce: bool = False) -> Callable[[], None]:
    """SIGTERM/SIGINT stop the run at the next step boundary (checkpointed, state
    ``pending``) instead of killing it mid-step. A second SIGINT stops at once.
    Returns a function that restores the previous handlers and clears the request."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum, frame):
        if STOP.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        STOP.request(signum)
        if announce:
            print(f"insr-hpc: {signal.Signals(signum).name}: stopping after the current step "
                  "(Ctrl-C again to stop now)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
        STOP.event.clear()
        STOP.signum = None

    return restore


@contextmanager
def signals_deferred():
    """Hold SIGTERM, SIGINT and SIGUSR2 back for the ``with`` block (a step's commit and
    its TensorBoard record): a handler that raises (a Slurm requeue, a cancel) runs right
    after it, so a committed step is never left unlogged. Nothing on platforms without
    ``pthread_sigmask``."""
    block = getattr(signal, "pthread_sigmask", None)
    if block is None:
        yield
        return
    held = {signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGUSR2", signal.SIGTERM)}
    previous = block(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        block(signal.SIG_SETMASK, previous)


@dataclass
class RunEnv:
    """The execution context a workload runs in (one per process / DDP rank)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    # Averages gradients / a scalar across ranks; None when running alone.
    reduce_grads: Callable[[list[torch.nn.Parameter]], None] | None = None
    reduce_scalar: Callable[[float], float] | None = None
    reduce_tensor: Callable[[torch.Tensor], None] | None = None  # in-place SUM across ranks
    barrier: Callable[[], None] = field(default=lambda: None)
    progress: bool = True

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_stop(self, where: str, before: Callable[[], None] | None = None) -> None:
        """At a step boundary: raise :class:`Interrupted` if a stop was requested (a
        signal on any rank, or rank 0's ``STOP.poll``, e.g. a cancel request; the ranks
        agree, so all stop after the same step). ``before`` runs first (e.g. a checkpoint)."""
        why = STOP.reason() if self.is_main else (STOP.reason() if STOP.is_set() else None)
        flag = why is not None
        if self.world_size > 1 and self.reduce_scalar is not None:
            flag = self.reduce_scalar(1.0 if flag else 0.0) > 0
        if flag:
            if before is not None:
                before()
            raise Interrupted(f"{why or 'stopped by another rank'} after {where}")


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (run seed, step, sub-problem, rank…)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


def git_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("insr-hpc", "torch", "numpy", "zarr", "xarray", "omegaconf", "scipy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out

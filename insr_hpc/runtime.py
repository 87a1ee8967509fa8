"""Where a run executes: device choice, data-parallel context, provenance."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
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

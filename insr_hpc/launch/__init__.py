"""Launch layer: backends (one module each) and the data-parallel process group."""

from insr_hpc.launch import local, ray, slurm  # noqa: F401  (registers)
from insr_hpc.launch.base import BACKENDS, Backend

__all__ = ["BACKENDS", "Backend"]

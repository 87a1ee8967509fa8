"""Launch layer: backends (one module each, declared in ``launch/base.py`` and imported
on first use) and the data-parallel process group."""

from insr_hpc.launch.base import BACKENDS, Backend

__all__ = ["BACKENDS", "Backend"]

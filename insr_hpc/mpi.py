"""Was this process started by an MPI launcher, and its ``COMM_WORLD`` if so.

The one MPI detector of the project (base layer: no torch, no mpi4py at import), used
by the data-parallel launcher (:mod:`insr_hpc.launch.ddp`), ``insr-hpc report``
(:mod:`insr_hpc.analysis.stores`) and the scripts in ``jobs/``.

An MPI starter leaves its marks in each process's environment: hydra (mpich's
``mpiexec``) and Slurm's PMI-2 set ``PMI_RANK``/``PMI_SIZE`` (hydra also
``MPI_LOCALRANKID``/``MPI_LOCALNRANKS``), Open MPI ``OMPI_COMM_WORLD_RANK``/``_SIZE``,
PMIx (``srun --mpi=pmix``, prrte) ``PMIX_RANK``. mpi4py is imported only when one of
them is set, so a plain ``python`` never pays for (or needs) MPI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from insr_hpc.errors import InsrError

# looked for in this order; the first one found is named in messages
MARKERS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK",
           "MPI_LOCALRANKID", "MPI_LOCALNRANKS")


def launched_by_mpi(env: Mapping[str, str] | None = None) -> str | None:
    """The first MPI launcher variable set in ``env`` (default ``os.environ``), or None
    when no MPI launcher started this process."""
    env = os.environ if env is None else env
    return next((k for k in MARKERS if k in env), None)


def comm_world(required: bool = True):
    """``mpi4py.MPI.COMM_WORLD`` when an MPI launcher started this process, else None.

    With mpi4py missing: an :class:`InsrError` (one line, naming the launcher variable
    found) when ``required``, else None (the caller runs alone)."""
    marker = launched_by_mpi()
    if marker is None:
        return None
    return import_comm_world(marker if required else None)


def import_comm_world(marker: str | None = None):
    """``mpi4py.MPI.COMM_WORLD`` (importing mpi4py initialises MPI). mpi4py missing: an
    :class:`InsrError` naming ``marker`` (the launcher variable that asked for MPI), or
    None when ``marker`` is None."""
    try:
        from mpi4py import MPI
    except ImportError:
        if marker is None:
            return None
        raise InsrError(f"started by an MPI launcher ({marker} is set) but mpi4py is not installed "
                        f"(pip install 'insr-hpc[cluster]')") from None
    return MPI.COMM_WORLD

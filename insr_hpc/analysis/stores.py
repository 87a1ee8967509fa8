"""Finding run stores under a directory and the MPI communicator analysis scripts split
them over: shared by ``insr-hpc report`` and the scripts in ``jobs/`` (no torch import)."""

from __future__ import annotations

import os


def find_stores(root: str) -> list[str]:
    """Every run's ``store.zarr`` under ``root``, sorted (not descending into stores or
    into a sweep's ``report/`` directory)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if "store.zarr" in dirnames:
            found.append(os.path.join(dirpath, "store.zarr"))
        dirnames[:] = [d for d in dirnames if not d.endswith(".zarr") and d != "report"]
    return sorted(found)


def mpi_comm():
    """MPI.COMM_WORLD when started by an MPI launcher (mpiexec, srun), else None."""
    launched = any(k in os.environ for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"))
    if not launched and int(os.environ.get("SLURM_NTASKS", "1") or 1) <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    return MPI.COMM_WORLD

"""Finding run stores under a directory and the MPI communicator analysis scripts split
them over: shared by ``insr-hpc report`` and the scripts in ``jobs/`` (no torch import)."""

from __future__ import annotations

import os

from insr_hpc.mpi import comm_world, import_comm_world, launched_by_mpi
from insr_hpc.rundir import RunDir


def find_stores(root: str) -> list[str]:
    """Every run's ``store.zarr`` under ``root``, sorted (not descending into stores or
    into a sweep's ``report/`` directory)."""
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        if RunDir.STORE in dirnames:
            found.append(RunDir(dirpath).store)
        dirnames[:] = [d for d in dirnames if not d.endswith(".zarr") and d != "report"]
    return sorted(found)


def mpi_comm():
    """MPI.COMM_WORLD when started by an MPI launcher (mpiexec, srun), else None.

    An MPI launcher (:func:`insr_hpc.mpi.launched_by_mpi`) without mpi4py is an
    InsrError; a Slurm step of several tasks without an MPI marker tries mpi4py and
    runs alone when it is missing."""
    if launched_by_mpi() is not None:
        return comm_world()
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        return import_comm_world()
    return None


def map_stores(root: str, analyse) -> tuple[list | None, int, int]:
    """``analyse(path)`` for every store under ``root``, split over MPI ranks.

    Returns (results in rank-then-store order on rank 0, None on other ranks; the number
    of ranks; the number of stores found)."""
    comm = mpi_comm()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm else (0, 1)
    stores = find_stores(root)
    mine = [analyse(p) for p in stores[rank::size]]
    parts = comm.gather(mine, root=0) if comm else [mine]
    if rank != 0:
        return None, size, len(stores)
    return [r for part in parts for r in part], size, len(stores)

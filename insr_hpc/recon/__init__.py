"""The ``recon`` workload: continuous field reconstruction from sparse observations.

Importing this package imports nothing heavy: the workload is declared in
``insr_hpc.workloads`` and ``recon/workload.py`` is imported when a run needs it."""

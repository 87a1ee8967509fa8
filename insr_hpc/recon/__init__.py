"""The ``recon`` workload: continuous field reconstruction from sparse observations."""

from insr_hpc.recon import workload  # noqa: F401  (registers the recon workload)

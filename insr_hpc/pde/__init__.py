"""PDE workload: INSR time stepping of neural spatial fields."""

from insr_hpc.pde import workload  # noqa: F401  (registers the workload)

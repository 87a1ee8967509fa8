"""PDE workload: INSR time stepping of neural spatial fields.

Importing this package imports nothing heavy: the workload, its cases, integrators and
optimisers are declared (``insr_hpc.workloads``, ``pde/cases``, ``pde/integrators``,
``pde/optimizers``) and imported when first used."""

"""insr-hpc: implicit neural spatial representations for PDE solving and field
reconstruction, from one laptop to a Slurm cluster."""

__version__ = "0.1.0"

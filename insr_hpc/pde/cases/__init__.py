"""PDE cases: each one module, registered by name (``problem.case``)."""

from insr_hpc.pde.case import CASES
from insr_hpc.pde.cases import advection  # noqa: F401  (registers)
from insr_hpc.pde.cases import elasticity, euler  # noqa: F401  (registers)

__all__ = ["CASES"]

"""Building blocks: neural fields behind one registry, and weight (un)flattening."""

from insr_hpc.fields import classical, fourier, hybrid, mmgn, resmlp, siren  # noqa: F401  (registers)
from insr_hpc.fields.flat import flatten_params, load_flat_params, param_layout
from insr_hpc.fields.registry import MODELS


def build_model(params, in_dim: int, out_dim: int):
    """The network that ``params`` (a registered model's Params) describes."""
    return MODELS.get(params.model).build(params, in_dim, out_dim)


__all__ = ["MODELS", "build_model", "flatten_params", "load_flat_params", "param_layout"]

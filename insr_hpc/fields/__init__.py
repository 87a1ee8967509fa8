"""Building blocks: neural fields behind one registry, and weight (un)flattening.

Importing this package imports no model: they are declared in ``fields/registry.py`` and
imported on first use; ``flatten_params``, ``load_flat_params`` and ``param_layout``
(``fields/flat.py``, torch) are imported when first asked for."""

from insr_hpc.fields.registry import MODELS


def build_model(params, in_dim: int, out_dim: int):
    """The network that ``params`` (a registered model's Params) describes."""
    return MODELS.get(params.model).build(params, in_dim, out_dim)


def __getattr__(name: str):  # torch-side names, imported when asked for
    if name in ("flatten_params", "load_flat_params", "param_layout"):
        from insr_hpc.fields import flat

        return getattr(flat, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "build_model", "flatten_params", "load_flat_params", "param_layout"]

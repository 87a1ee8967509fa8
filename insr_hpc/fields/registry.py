"""The model registry: ``network.model`` → a class with a ``Params`` dataclass and
``build(params, in_dim, out_dim) -> torch.nn.Module``.

Every model maps ``(N, in_dim)`` coordinates to ``(N, out_dim)`` values; models with
extra inputs (e.g. a latent code) take them as keyword arguments.

Latent-modulated models (auto-decoders such as MMGN) set ``latent_dim > 0`` and are
called as ``model(x, codes=codes, index=index, x_index=x_index)``: ``codes``
(K, latent_dim) are owned and optimised by the caller (one per time step), ``index``
(N,) picks each point's code, and ``x_index`` (N,) each point's row of ``x`` (P, in_dim)
(None: one point per row), so position-only work is done once per distinct position. A model without the attribute (or with ``latent_dim == 0``) is called as
``model(x)``; see :func:`latent_dim`.
"""

from insr_hpc.registry import Registry

MODELS: Registry = Registry("model", "network.model")
MODELS.default = "siren"


def latent_dim(model) -> int:
    """Size of the latent code ``model`` expects (0: a plain coordinate network)."""
    return int(getattr(model, "latent_dim", 0) or 0)

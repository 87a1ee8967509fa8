"""The model registry: ``network.model`` → a class with a ``Params`` dataclass and
``build(params, in_dim, out_dim) -> torch.nn.Module``.

Every model maps ``(N, in_dim)`` coordinates to ``(N, out_dim)`` values; models with
extra inputs (e.g. a latent code) take them as keyword arguments.
"""

from insr_hpc.registry import Registry

MODELS: Registry = Registry("model", "network.model")
MODELS.default = "siren"

"""The model registry: ``network.model`` → a class with a ``Params`` dataclass and
``build(params, in_dim, out_dim) -> torch.nn.Module``. Every model is declared below
with its config dataclass (``fields/params.py``, torch-free) and capabilities; its
module (torch) is imported on first use (``MODELS.get``).

Every model maps ``(N, in_dim)`` coordinates to ``(N, out_dim)`` values; models with
extra inputs (e.g. a latent code) take them as keyword arguments.

Capabilities an entry declares (``MODELS.declare(name, ...)``),
read with ``MODELS.has(name, cap)`` without building anything:

* ``latent`` — a latent-modulated auto-decoder (MMGN, and ``hybrid``'s network): its
  ``Params`` has ``latent``, the size of the code (:func:`latent_size`). It is called as
  ``model(x, codes=codes, index=index, x_index=x_index)``: ``codes`` (K, latent) are
  owned and optimised by the caller (one per time step), ``index`` (N,) picks each
  point's code, and ``x_index`` (N,) each point's row of ``x`` (P, in_dim) (None: one
  point per row), so position-only work is done once per distinct position. Any other
  model is called as ``model(x)``.
* ``classical`` — an interpolant, not a network: ``build`` returns an object with
  ``interpolate(values, observed, valid, lat, lon)`` (:mod:`insr_hpc.fields.classical`).
* ``hybrid`` — an interpolant corrected by a network (:mod:`insr_hpc.fields.hybrid`): the
  workload computes the entry's ``base_model`` interpolant and blends.
"""

from insr_hpc.fields.params import (
    ClassicalParams,
    FFNGaussianParams,
    FFNPositionalParams,
    HybridParams,
    IDWParams,
    KrigingParams,
    MMGNParams,
    ResMLPParams,
    SirenParams,
)
from insr_hpc.registry import Registry

MODELS: Registry = Registry("model", "network.model", capabilities=("latent", "classical", "hybrid"))
MODELS.default = "siren"

MODELS.declare("classical", "insr_hpc.fields.classical:ClassicalSelector", ClassicalParams, classical=True)
MODELS.declare("ffn_g", "insr_hpc.fields.fourier:FFNGaussian", FFNGaussianParams)
MODELS.declare("ffn_p", "insr_hpc.fields.fourier:FFNPositional", FFNPositionalParams)
MODELS.declare("hybrid", "insr_hpc.fields.hybrid:Hybrid", HybridParams, latent=True, hybrid=True)
MODELS.declare("idw", "insr_hpc.fields.classical:IDW", IDWParams, classical=True)
MODELS.declare("kriging", "insr_hpc.fields.classical:Kriging", KrigingParams, classical=True)
MODELS.declare("mmgn", "insr_hpc.fields.mmgn:MMGN", MMGNParams, latent=True)
MODELS.declare("resmlp", "insr_hpc.fields.resmlp:ResMLP", ResMLPParams)
MODELS.declare("siren", "insr_hpc.fields.siren:Siren", SirenParams)


def latent_size(params) -> int:
    """Size of the latent code the model ``params`` (a registered model's Params)
    describes expects: ``params.latent`` for a ``latent`` model, else 0 (a plain
    coordinate network)."""
    return int(params.latent) if MODELS.has(params.model, "latent") else 0

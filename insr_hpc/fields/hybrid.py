"""``hybrid``: a classical interpolant corrected by a neural field, as far as held-out
observations support the correction.

    f(x, t) = b(x, t) + w · (n(x, t) − b(x, t)),        0 ≤ w ≤ max_weight

* b — the interpolant (``base``: ``kriging`` or ``idw``) of the training observations,
  one time step at a time;
* n — an MMGN (latent-modulated Gabor network) trained on the same observations with the
  usual recipe; n − b is the network's residual over the interpolated field;
* w — the weight of that residual, fitted by least squares on the validation
  observations (held back from both b and n) after every epoch: the closed-form
  minimiser of Σ (y − b − w (n − b))² over the validation points, clipped to
  [0, max_weight]. The epoch kept (``train.select: best``) is the one whose *blend* has
  the lowest validation MSE.

So w = 0 — the interpolant itself — is always a candidate: the network only moves the
field away from the interpolant where the held-out sensors say it is right to. And they
must say it clearly: w is kept only when it is at least ``min_z`` standard errors above
zero, else it is 0. The standard error is cluster-robust, one cluster per validation
grid point, because a sensor's residuals over time are one piece of evidence, not
hundreds (on tasks 1–2 the validation set is a handful of whole sensors: 9 on A1B, whose
2 160 observations would otherwise suggest a 16× smaller error). With ``min_z`` 1 (the
one-standard-error rule) an epoch-1 network's w = 0.06 ± 0.075 on A1B task1 — noise that
cost 3 % against kriging at 200 epochs — is refused (docs/results.md).

Why not train n on y − b directly: an interpolant reproduces its own training
observations (IDW exactly, kriging up to its nugget), so those residuals are ≈ 0 and
carry no signal; the residual has to be measured where b did not see the data, which is
what the validation split is.

``build`` returns the network (an :class:`~insr_hpc.fields.mmgn.MMGN`), so the trainer
handles it like any latent model; :meth:`Hybrid.base_model` is the interpolant. The
default network is MMGN at the paper's size except ``input_scale`` 16 (smoother Gabor
filters: on A1B task1 5 %, 50 epochs, 1.29e-3 against 2.99e-3 at 256).
"""

from __future__ import annotations


from insr_hpc.fields.mmgn import MMGN
from insr_hpc.fields.params import HybridParams
from insr_hpc.fields.registry import MODELS



# hybrid: the workload computes the interpolant and blends (insr_hpc/recon/workload.py);
# latent: build returns an MMGN
@MODELS.register("hybrid")
class Hybrid:

    Params = HybridParams

    @staticmethod
    def build(params: "Hybrid.Params", in_dim: int, out_dim: int) -> MMGN:
        return MMGN(params.network_params(), in_dim, out_dim)

    @staticmethod
    def base_model(params: "Hybrid.Params"):
        """The interpolant: an object with ``interpolate(values, observed, valid, lat, lon)``."""
        base = params.base_params()
        return MODELS.get("classical" if params.base == "auto" else params.base).build(base)

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
field away from the interpolant where the held-out observations say it is right to. And
they must say it across independent groups of them: the validation observations'
clusters (sensors on tasks 1–2, lat/lon tiles on tasks 3–4) are dealt into folds, w is
refitted without each fold and its MSE reduction over the interpolant measured on it,
and w is kept only when the mean reduction is more than ``min_z`` standard errors
(across folds) above zero, and never with fewer than ``min_clusters`` clusters
(:func:`insr_hpc.fields.crossval.choose_blend`, docs/recon.md "Cross-validation"); else
w = 0 and the run's reconstruction is the interpolant bit for bit — with ``refit`` (the
default) the interpolant of *every* observation, validation ones included, which is what
``network.model=classical train.validation=0`` returns (the validation observations have
then served their purpose, choosing the epoch and w); a kept w > 0 then blends over that
interpolant of every observation, b_all + w (n − b_all). ``base: auto`` makes the interpolant
whichever classical model cross-validates best on the training observations (on all of
them for the refit) (:class:`insr_hpc.fields.classical.ClassicalSelector`). The shipped
default, ``configs/reconstruct.yaml``, is this model with ``base: auto``.

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

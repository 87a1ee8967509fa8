"""The config sections of the models (``network``, typed by ``network.model``), with
their checks. Torch-free: a config is validated without importing any model (the
models are declared in ``insr_hpc/fields/registry.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from insr_hpc.config.schema import ALLOW_INF, require

BASES = ("kriging", "idw", "auto")  # hybrid's interpolants (auto: chosen by cross-validation, ClassicalParams)


@dataclass
class IDWParams:
    model: str = "idw"
    neighbours: int = 8  # nearest observed points per estimate
    power: float = 2.0  # weight = distance^-power

    def validate(self) -> None:
        require(self.neighbours >= 1, "neighbours", f"must be >= 1, got {self.neighbours}")
        require(self.power > 0, "power", f"must be > 0, got {self.power}")


@dataclass
class KrigingParams:
    model: str = "kriging"
    nu: float = field(default=1.5, metadata={ALLOW_INF: True})  # Matérn smoothness: 0.5, 1.5, 2.5 (inf: squared exponential)
    length_scale: float = 0.1  # initial range, chord units of the unit sphere (0.1 ≈ 5.7°)
    nugget: float = 1e-3  # initial white-noise variance (standardised units)
    fit_every: int = 1  # time steps between hyperparameter fits (others reuse the last fit)

    def validate(self) -> None:
        require(self.nu > 0, "nu", f"must be > 0, got {self.nu}")
        require(self.length_scale > 0, "length_scale", f"must be > 0, got {self.length_scale}")
        require(self.nugget > 0, "nugget", f"must be > 0, got {self.nugget}")
        require(self.fit_every >= 1, "fit_every", f"must be >= 1, got {self.fit_every}")


@dataclass
class ClassicalParams:
    """``classical``: IDW or kriging, and their parameters, chosen per run by
    cross-validation over the training observations (``cv``: leave-one-out, or K-fold with
    whole sensors left out where positions are fixed and random points per time step where
    they are redrawn), on ``steps`` evenly spaced time steps; the candidate of lowest pooled
    CV MSE interpolates the field."""

    model: str = "classical"
    candidates: list[str] = field(default_factory=lambda: ["idw", "kriging"])  # the model families cross-validated
    idw_power: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])  # IDW candidates: distance powers
    idw_neighbours: list[int] = field(default_factory=lambda: [4, 8, 16])  # IDW candidates: nearest observations used
    # Matérn smoothness of the kriging candidates (0.5 exponential, 1.5; inf: squared exponential),
    # each kernel's length scale and nugget fitted by maximum likelihood per fold and time step.
    # Not 2.5 nor inf by default: on time steps with few observations their fits extrapolate
    # wildly between them (grid MSE up to 22x and 25x the best kernel's) where the CV's steps
    # need not see it (docs/recon.md)
    kriging_nu: list[float] = field(default_factory=lambda: [0.5, 1.5], metadata={ALLOW_INF: True})
    length_scale: float = 0.1  # kriging: initial range (chord units)
    nugget: float = 1e-3  # kriging: initial white-noise variance
    fit_every: int = 1  # kriging (the chosen one, over every time step): time steps between fits
    # kfold: K folds refitted without them (whole sensors on tasks 1-2); loo: leave-one-out
    # at every observation at the step's fitted hyperparameters (kriging in closed form),
    # 4x cheaper but it favours smooth kernels: measured worse (docs/recon.md)
    cv: str = "kfold"
    # the two best by CV, when the CV cannot tell them apart (the second's excess CV error is
    # under stack_z standard errors across clusters), are averaged: the reconstruction is
    # ½ a + ½ b (twice the interpolation cost); false: always the single best
    stack: bool = True
    stack_z: float = 1.0  # stack: how many standard errors "clearly better" takes
    folds: int = 5  # cv kfold: K
    steps: int = 24  # time steps the CV uses (evenly spaced; 0: every step)
    tiles: int = 6  # positions redrawn per step: clusters counted as tiles × tiles lat/lon blocks
    seed: int = 0  # fold assignment

    def validate(self) -> None:
        require(len(self.candidates) >= 1, "candidates", "must name at least one of idw, kriging")
        for name in self.candidates:
            require(name in ("idw", "kriging"), "candidates", f"expected idw or kriging, got '{name}'")
        require(len(set(self.candidates)) == len(self.candidates), "candidates", "names a model twice")
        if "idw" in self.candidates:
            require(len(self.idw_power) >= 1 and all(p > 0 for p in self.idw_power), "idw_power",
                    f"must be a non-empty list of numbers > 0, got {self.idw_power}")
            require(len(self.idw_neighbours) >= 1 and all(k >= 1 for k in self.idw_neighbours), "idw_neighbours",
                    f"must be a non-empty list of integers >= 1, got {self.idw_neighbours}")
        if "kriging" in self.candidates:
            require(len(self.kriging_nu) >= 1 and all(n > 0 for n in self.kriging_nu), "kriging_nu",
                    f"must be a non-empty list of numbers > 0 (inf: RBF), got {self.kriging_nu}")
        require(self.length_scale > 0, "length_scale", f"must be > 0, got {self.length_scale}")
        require(self.nugget > 0, "nugget", f"must be > 0, got {self.nugget}")
        require(self.fit_every >= 1, "fit_every", f"must be >= 1, got {self.fit_every}")
        require(self.cv in ("loo", "kfold"), "cv", f"expected loo or kfold, got '{self.cv}'")
        require(self.stack_z >= 0, "stack_z", f"must be >= 0, got {self.stack_z}")
        require(self.folds >= 2, "folds", f"must be >= 2, got {self.folds}")
        require(self.steps >= 0, "steps", f"must be >= 0, got {self.steps}")
        require(self.tiles >= 1, "tiles", f"must be >= 1, got {self.tiles}")


@dataclass
class FFNPositionalParams:
    model: str = "ffn_p"
    width: int = 256
    depth: int = 4
    frequencies: int = 220  # per input dimension
    sigma: float = 90.0  # base of the log-spaced frequencies (cycles per unit)

    def validate(self) -> None:
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.depth >= 1, "depth", f"must be >= 1, got {self.depth}")
        require(self.frequencies >= 1, "frequencies", f"must be >= 1, got {self.frequencies}")
        require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")


@dataclass
class FFNGaussianParams:
    model: str = "ffn_g"
    width: int = 256
    depth: int = 4
    features: int = 256
    sigma: float = 7.0  # std of the random frequencies (cycles per unit)

    def validate(self) -> None:
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.depth >= 1, "depth", f"must be >= 1, got {self.depth}")
        require(self.features >= 1, "features", f"must be >= 1, got {self.features}")
        require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")


@dataclass
class MMGNParams:
    model: str = "mmgn"
    width: int = 256  # hidden units
    layers: int = 5  # modulated hidden layers A_1..A_L (filters g_0..g_L)
    latent: int = 128  # size of each time step's code z_t
    input_scale: float = 16.0  # the paper: 256 (better where positions are redrawn, tasks 3-4); 16 interpolates fixed sensors far better
    alpha: float = 1.0  # γ ~ Gamma(α/(L+1), β): most filters start wide and low-frequency
    beta: float = 1.0

    def validate(self) -> None:
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.layers >= 1, "layers", f"must be >= 1, got {self.layers}")
        require(self.latent >= 1, "latent", f"must be >= 1, got {self.latent}")
        require(self.input_scale > 0, "input_scale", f"must be > 0, got {self.input_scale}")
        require(self.alpha > 0 and self.beta > 0, "alpha", "alpha and beta must be > 0")


@dataclass
class ResMLPParams:
    model: str = "resmlp"
    width: int = 250
    depth: int = 6

    def validate(self) -> None:
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.depth >= 1, "depth", f"must be >= 1, got {self.depth}")


@dataclass
class SirenParams:
    model: str = "siren"
    # depth = number of SINE layers (the first, coordinate layer included), not
    # counting the linear output layer. The INSR code's ``--num_hidden_layers N``
    # builds N + 1 sine layers: their 1D advection network (N = 2, width 20,
    # 901 parameters) is depth 3 here.
    depth: int = 2
    width: int = 20
    omega0: float = 30.0  # first-layer frequency
    omega0_hidden: float = 30.0
    output_scale: float = 1.0  # outputs are multiplied by this (fields with large range)

    def validate(self) -> None:
        require(self.depth >= 1, "depth", f"must be >= 1, got {self.depth}")
        require(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        require(self.omega0 > 0, "omega0", f"must be > 0, got {self.omega0}")
        require(self.omega0_hidden > 0, "omega0_hidden", f"must be > 0, got {self.omega0_hidden}")


@dataclass
class HybridParams:
    model: str = "hybrid"
    base: str = "kriging"  # the interpolant: kriging | idw | auto (chosen by cross-validation, as model classical)
    max_weight: float = 1.0  # upper bound of the residual's weight w
    # w is kept only if its cross-validated gain over the base (mean over the validation
    # folds of the per-fold MSE reduction, w refitted without the fold) is > min_z × its
    # standard error across folds, else w = 0: the base exactly; 0: any positive gain
    min_z: float = 1.0
    min_clusters: int = 6  # fewer independent validation clusters than this: w = 0, the base exactly
    # after selection the base interpolates *every* observation, training and validation (for
    # base auto: chosen again by CV over all of them): w = 0 (refused) returns it, as a
    # classical run with train.validation=0 would, bit for bit; w > 0 blends over it.
    # false: the base of the training observations only
    refit: bool = True
    width: int = 256  # network (an MMGN, insr_hpc/fields/mmgn.py): hidden units
    layers: int = 5  # network: modulated hidden layers
    latent: int = 128  # network: size of each time step's latent code
    input_scale: float = 16.0  # network: highest input frequency of the Gabor filters (rad per unit)
    alpha: float = 1.0  # network: shape α of the filters' Gamma(α/(L+1), β) scale prior
    beta: float = 1.0  # network: rate β of that prior
    # the interpolant (see insr_hpc/fields/classical.py)
    nu: float = field(default=1.5, metadata={ALLOW_INF: True})  # kriging: Matérn smoothness
    length_scale: float = 0.1  # kriging: initial range (chord units)
    nugget: float = 1e-3  # kriging: initial white-noise variance
    fit_every: int = 1  # kriging: time steps between hyperparameter fits
    neighbours: int = 8  # idw
    power: float = 2.0  # idw

    def validate(self) -> None:
        require(self.base in BASES, "base", f"expected one of {', '.join(BASES)}, got '{self.base}'")
        require(self.max_weight > 0, "max_weight", f"must be > 0, got {self.max_weight}")
        require(self.min_z >= 0, "min_z", f"must be >= 0, got {self.min_z}")
        require(self.min_clusters >= 2, "min_clusters", f"must be >= 2, got {self.min_clusters}")
        self.network_params().validate()
        self.base_params().validate()

    def network_params(self) -> MMGNParams:
        return MMGNParams(width=self.width, layers=self.layers, latent=self.latent, input_scale=self.input_scale,
                           alpha=self.alpha, beta=self.beta)

    def base_params(self):
        if self.base == "auto":  # the selector's default grid, with this section's kriging starting values
            return ClassicalParams(length_scale=self.length_scale, nugget=self.nugget, fit_every=self.fit_every)
        if self.base == "idw":
            return IDWParams(neighbours=self.neighbours, power=self.power)
        return KrigingParams(nu=self.nu, length_scale=self.length_scale, nugget=self.nugget, fit_every=self.fit_every)

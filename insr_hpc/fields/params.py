"""The config sections of the models (``network``, typed by ``network.model``), with
their checks. Torch-free: a config is validated without importing any model (the
models are declared in ``insr_hpc/fields/registry.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from insr_hpc.config.schema import ALLOW_INF, require

BASES = ("kriging", "idw")  # hybrid's interpolants


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
    base: str = "kriging"  # the interpolant: kriging | idw
    max_weight: float = 1.0  # upper bound of the residual's weight w
    min_z: float = 1.0  # w is kept only if ≥ min_z × its (cluster-robust) standard error, else 0; 0: always kept
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
        self.network_params().validate()
        self.base_params().validate()

    def network_params(self) -> MMGNParams:
        return MMGNParams(width=self.width, layers=self.layers, latent=self.latent, input_scale=self.input_scale,
                           alpha=self.alpha, beta=self.beta)

    def base_params(self):
        if self.base == "idw":
            return IDWParams(neighbours=self.neighbours, power=self.power)
        return KrigingParams(nu=self.nu, length_scale=self.length_scale, nugget=self.nugget, fit_every=self.fit_every)

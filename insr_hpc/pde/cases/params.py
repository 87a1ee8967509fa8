"""The config sections of the PDE cases (``problem``, typed by ``problem.case``):
one dataclass per case, with its checks. Torch-free, so that a config is validated
without importing any case (the cases themselves: ``advection.py``, ``elasticity.py``,
``euler.py``, declared in ``insr_hpc/pde/cases/__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from insr_hpc.config.schema import require
from insr_hpc.errors import ConfigError

ADVECTION_INITIAL = ("gaussian", "wavepacket")  # advection's initial profiles
EULER_INITIAL = ("taylor_green", "taylor_green_multiscale", "vortex_pair")  # insr_hpc/pde/cases/euler_initial.py
PRESSURE_FORMS = ("ritz", "strong")  # euler
SCENARIOS = ("sag", "stretch", "fall", "free")  # elasticity
SIDES = ("-x", "+x", "-y", "+y", "-z", "+z")
FIXED = ("left", "none", *SIDES)
NEEDS_FIXED = ("sag", "stretch")
MATERIALS = ("neo_hookean", "arap", "arap_volume")


@dataclass
class AdvectionParams:
    case: str = "advection"
    length: float = 4.0
    speed: float = 0.25
    initial: str = "gaussian"  # gaussian | wavepacket
    mu: float = -1.5
    sigma: float = 0.1
    wavenumber: float = 20.0  # wavepacket only
    boundary_weight: float = 1.0

    def validate(self) -> None:
        require(self.length > 0, "length", f"must be > 0, got {self.length}")
        require(self.sigma > 0, "sigma", f"must be > 0, got {self.sigma}")
        require(
            self.initial in ADVECTION_INITIAL,
            "initial",
            f"unknown initial condition '{self.initial}' (known: {', '.join(ADVECTION_INITIAL)})",
        )
        require(abs(self.mu) < self.length / 2, "mu", f"must lie inside (−L/2, L/2) = ±{self.length / 2}")
        require(self.boundary_weight >= 0, "boundary_weight", "must be >= 0")


@dataclass
class ElasticityParams:
    case: str = "elasticity"
    scenario: str = "sag"  # sag | stretch | fall | free (see docs/elasticity.md)
    # the body: "" → the bar [0, length] × ±height/2; else "builtin:NAME" (square, bar,
    # beam, torus) or a triangle (2D) / tetrahedral (3D) mesh file meshio reads
    mesh: str = ""
    mesh_resolution: int = 0  # builtin meshes: cells along the longest side (0: the builtin's default)
    material: str = "neo_hookean"  # neo_hookean | arap | arap_volume
    length: float = 2.0
    height: float = 0.4
    density: float = 1.0
    youngs_modulus: float = 500.0
    poisson_ratio: float = 0.3
    gravity: float = 1.0  # magnitude, pointing down (−y in 2D, −z in 3D)
    fixed: str = "left"  # none | left (= -x) | -x | +x | -y | +y | -z | +z: clamped by construction
    stretch: float = 1.2  # stretch: initial stretch factor along x
    ground: float = -0.6  # fall: the contact plane (y = ground in 2D, z = ground in 3D)
    contact_stiffness: float = 1.0e4
    sphere_centre: list[float] = field(default_factory=list)  # a sphere (circle in 2D) collider: d numbers
    sphere_radius: float = 0.0  # 0: no sphere
    pull_side: str = ""  # a vertex set pulled by `pull` (penalty `constraint_stiffness`): a side …
    pull_box: list[float] = field(default_factory=list)  # … or a box [lo_1..lo_d, hi_1..hi_d]
    pull: list[float] = field(default_factory=list)  # its displacement (d numbers)
    pull_until: float = -1.0  # the pull holds while t ≤ pull_until (< 0: always)
    constraint_stiffness: float = 1.0e4  # penalty k of the pulled set: k/2 · mean |φ(Xᵢ) − Xᵢ − pull|²
    force: list[float] = field(default_factory=list)  # external force per unit mass (d numbers) …
    force_until: float = 0.0  # … applied while t ≤ force_until
    fem_nx: int = 64  # the bar's FEM reference mesh (multiples of 8 and 2: points on nodes)
    fem_ny: int = 8
    fem_refine: int = 1  # mesh bodies: the FEM reference runs on the mesh refined this many times

    def validate(self) -> None:
        require(self.scenario in SCENARIOS, "scenario", f"unknown scenario '{self.scenario}' (known: {', '.join(SCENARIOS)})")
        require(self.fixed in FIXED, "fixed", f"expected one of {', '.join(FIXED)}, got '{self.fixed}'")
        require(
            not (self.scenario in NEEDS_FIXED and self.fixed == "none"),
            "fixed",
            f"scenario '{self.scenario}' needs a fixed boundary (fixed: left)",
        )
        require(self.material in MATERIALS, "material", f"expected one of {', '.join(MATERIALS)}, got '{self.material}'")
        require(self.length > 0 and self.height > 0, "length", "length and height must be > 0")
        require(self.density > 0, "density", f"must be > 0, got {self.density}")
        require(self.youngs_modulus > 0, "youngs_modulus", f"must be > 0, got {self.youngs_modulus}")
        require(0 <= self.poisson_ratio < 0.5, "poisson_ratio", f"must lie in [0, 0.5), got {self.poisson_ratio}")
        require(self.stretch > 0, "stretch", f"must be > 0, got {self.stretch}")
        require(self.contact_stiffness >= 0, "contact_stiffness", f"must be >= 0, got {self.contact_stiffness}")
        require(self.constraint_stiffness >= 0, "constraint_stiffness", f"must be >= 0, got {self.constraint_stiffness}")
        require(self.sphere_radius >= 0, "sphere_radius", f"must be >= 0, got {self.sphere_radius}")
        require(self.fem_nx >= 8 and self.fem_nx % 8 == 0, "fem_nx", f"must be a positive multiple of 8, got {self.fem_nx}")
        require(self.fem_ny >= 2 and self.fem_ny % 2 == 0, "fem_ny", f"must be a positive even number, got {self.fem_ny}")
        require(0 <= self.fem_refine <= 3, "fem_refine", f"must lie in 0..3, got {self.fem_refine}")
        require(self.mesh_resolution >= 0, "mesh_resolution", f"must be >= 0, got {self.mesh_resolution}")
        require(not (self.pull_side and self.pull_box), "pull_box", "give pull_side or pull_box, not both")
        require(not self.pull_side or self.pull_side in SIDES, "pull_side",
                f"expected one of {', '.join(SIDES)}, got '{self.pull_side}'")
        if not self.mesh:
            dim = 2
            require(self.fixed in ("left", "none"), "fixed", f"the bar (no problem.mesh) is fixed 'left' or 'none', got '{self.fixed}'")
            require(self.scenario != "free" and not (self.sphere_radius or self.pull or self.force), "mesh",
                    "sphere, pull, force and scenario 'free' need a body from problem.mesh (e.g. builtin:bar)")
        else:
            from insr_hpc.pde.mesh import MeshError, mesh_dim

            try:
                dim = mesh_dim(self.mesh, self.mesh_resolution)
            except MeshError as exc:
                raise ConfigError("mesh", f"'{exc.source}': {exc.reason}") from None
            require(dim == 3 or self.fixed[-1:] != "z", "fixed", f"a 2D body has no side '{self.fixed}'")
        for key in ("sphere_centre", "pull", "force"):
            value = getattr(self, key)
            require(len(value) in (0, dim), key, f"expected {dim} numbers (the body is {dim}D), got {len(value)}")
        require(not self.sphere_radius or len(self.sphere_centre) == dim, "sphere_centre",
                f"a sphere collider (sphere_radius > 0) needs its centre: {dim} numbers")
        require(not self.pull_box or len(self.pull_box) == 2 * dim, "pull_box",
                f"expected {2 * dim} numbers [lo_1..lo_{dim}, hi_1..hi_{dim}], got {len(self.pull_box)}")
        require(not self.pull or bool(self.pull_side or self.pull_box), "pull", "needs pull_side or pull_box")


@dataclass
class EulerParams:
    case: str = "euler"
    initial: str = "taylor_green"  # taylor_green | taylor_green_multiscale | vortex_pair
    mode_amplitude: float = 0.5  # taylor_green_multiscale: weight of the second mode
    vortex_strength: float = 1.0  # vortex_pair: peak ψ scale (velocity units)
    vortex_radius: float = 0.25  # vortex_pair: Gaussian radius
    vortex_separation: float = 0.5  # vortex_pair: distance of the two centres
    pressure_form: str = "ritz"  # ritz | strong (see module docstring)
    wall_weight: float = 1.0  # penalty weight of (u·n)² (and ∂p/∂n² in strong form)
    reference_resolution: int = 128  # grid cells per side of the reference solver
    reference_order: int = 3  # its interpolation order (1 linear, 3 cubic)

    def validate(self) -> None:
        require(
            self.initial in EULER_INITIAL,
            "initial",
            f"unknown initial condition '{self.initial}' (known: {', '.join(EULER_INITIAL)})",
        )
        require(
            self.pressure_form in PRESSURE_FORMS,
            "pressure_form",
            f"expected one of {', '.join(PRESSURE_FORMS)}, got '{self.pressure_form}'",
        )
        require(self.wall_weight >= 0, "wall_weight", f"must be >= 0, got {self.wall_weight}")
        require(self.vortex_radius > 0, "vortex_radius", f"must be > 0, got {self.vortex_radius}")
        require(
            0 < self.vortex_separation < 2, "vortex_separation", f"must lie in (0, 2), got {self.vortex_separation}"
        )
        require(self.reference_resolution >= 8, "reference_resolution", f"must be >= 8, got {self.reference_resolution}")
        require(self.reference_order in (1, 3), "reference_order", f"must be 1 or 3, got {self.reference_order}")

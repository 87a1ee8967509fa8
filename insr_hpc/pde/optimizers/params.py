"""The config sections of the optimisers (``optim``, typed by ``optim.name``), with
their checks. Torch-free: a config is validated without importing any optimiser."""

from __future__ import annotations

from dataclasses import dataclass

from insr_hpc.config.schema import require

RESAMPLE = ("iteration", "step")  # gauss_newton
SOLVERS = ("auto", "cholesky", "cg")
CURVATURES = ("ggn", "hessian")


@dataclass
class AdamParams:
    name: str = "adam"
    lr: float = 1e-3
    max_iters: int = 300
    init_lr: float = 1e-3  # step 0: fitting the initial condition
    init_max_iters: int = 2000  # most Adam iterations of step 0
    init_rtol: float = 1e-4  # step 0 is a plain fit: a stricter plateau test pays off every later step
    tol: float = 1e-9
    rtol: float = 1e-3
    window: int = 25
    patience: int = 2
    grad_clip: float = 0.0  # 0 = off
    plateau: int = 0  # iterations without improvement before lr ×= plateau_factor; 0 = constant lr
    plateau_factor: float = 0.1  # the learning rate is multiplied by this on a plateau
    min_lr: float = 0.0  # stop once the learning rate falls below this (with plateau > 0)
    keep_best: bool = True  # return the better of the last and the lowest-loss iterate

    def validate(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.init_lr > 0, "init_lr", f"must be > 0, got {self.init_lr}")
        require(self.max_iters >= 1, "max_iters", f"must be >= 1, got {self.max_iters}")
        require(self.init_max_iters >= 1, "init_max_iters", f"must be >= 1, got {self.init_max_iters}")
        require(self.tol >= 0, "tol", f"must be >= 0, got {self.tol}")
        require(self.rtol >= 0, "rtol", f"must be >= 0, got {self.rtol}")
        require(self.init_rtol >= 0, "init_rtol", f"must be >= 0, got {self.init_rtol}")
        require(self.window >= 1, "window", f"must be >= 1, got {self.window}")
        require(self.patience >= 1, "patience", f"must be >= 1, got {self.patience}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(self.plateau >= 0, "plateau", f"must be >= 0, got {self.plateau}")
        require(0 < self.plateau_factor < 1, "plateau_factor", f"must lie in (0, 1), got {self.plateau_factor}")
        require(self.min_lr >= 0, "min_lr", f"must be >= 0, got {self.min_lr}")


@dataclass
class GaussNewtonParams:
    name: str = "gauss_newton"
    max_iters: int = 5  # iterations per time step (each: one Jacobian, one or more solves)
    init_max_iters: int = 40  # step 0: fitting the initial condition from a random network
    tol: float = 0.0  # stop once the objective is below this
    rtol: float = 0.05  # stop when an accepted iteration improved the objective by less than this
    init_rtol: float = 0.0  # rtol of step 0 (0: run all init_max_iters iterations)
    damping: float = 1e-3  # initial λ (relative to diag JᵀJ); adapted every iteration
    resample: str = "step"  # one batch per time step (measured best), or fresh samples every iteration
    linear_solver: str = "auto"  # auto: cholesky up to max_dense parameters, cg beyond
    max_dense: int = 10000  # parameters up to which JᵀJ is formed and Cholesky-factored
    cg_iters: int = 100  # conjugate-gradient iterations per solve (matrix-free and Newton–CG)
    reduction: float = 0.0  # LM, steps ≥ 1: converged once the objective is ≤ this × its warm-start value
    damping_floor: float = 0.0  # LM, dense solve: Marquardt's diag(JᵀJ) floored at this × its mean (0: no floor)
    chunk: int = 2048  # samples per vmap chunk of the Jacobian (bounds memory)
    gram_dtype: str = "float32"  # JᵀJ product in float32 (2× faster) or float64; the solve is float64
    init_warmup: int = 300  # step 0: Adam iterations (lr init_warmup_lr) before Gauss–Newton
    init_warmup_lr: float = 1e-3  # Adam learning rate of the step-0 warm-up
    # energies whose terms split into local quantities and their energy (Energy.inner/outer):
    energy_curvature: str = "ggn"  # ggn: batched Gauss–Newton curvature; hessian: exact, per point
    hessian_samples: int = 0  # curvature on a random subset of this many samples (0: the whole batch)
    average: int = 0  # after the descent iterations, this many more, whose mean is returned
    average_hessian_samples: int = 0  # hessian_samples of the averaged iterations (0: hessian_samples)

    def validate(self) -> None:
        require(self.max_iters >= 1, "max_iters", f"must be >= 1, got {self.max_iters}")
        require(self.init_max_iters >= 1, "init_max_iters", f"must be >= 1, got {self.init_max_iters}")
        require(self.tol >= 0, "tol", f"must be >= 0, got {self.tol}")
        require(self.rtol >= 0, "rtol", f"must be >= 0, got {self.rtol}")
        require(self.init_rtol >= 0, "init_rtol", f"must be >= 0, got {self.init_rtol}")
        require(self.damping > 0, "damping", f"must be > 0, got {self.damping}")
        require(self.resample in RESAMPLE, "resample", f"expected one of {', '.join(RESAMPLE)}, got '{self.resample}'")
        require(
            self.linear_solver in SOLVERS,
            "linear_solver",
            f"expected one of {', '.join(SOLVERS)}, got '{self.linear_solver}'",
        )
        require(self.max_dense >= 1, "max_dense", f"must be >= 1, got {self.max_dense}")
        require(self.cg_iters >= 1, "cg_iters", f"must be >= 1, got {self.cg_iters}")
        require(0 <= self.reduction < 1, "reduction", f"must lie in [0, 1), got {self.reduction}")
        require(self.damping_floor >= 0, "damping_floor", f"must be >= 0, got {self.damping_floor}")
        require(self.chunk >= 1, "chunk", f"must be >= 1, got {self.chunk}")
        require(self.gram_dtype in ("float64", "float32"), "gram_dtype", f"expected float64 or float32, got '{self.gram_dtype}'")
        require(self.init_warmup >= 0, "init_warmup", f"must be >= 0, got {self.init_warmup}")
        require(self.init_warmup_lr > 0, "init_warmup_lr", f"must be > 0, got {self.init_warmup_lr}")
        require(
            self.energy_curvature in CURVATURES,
            "energy_curvature",
            f"expected one of {', '.join(CURVATURES)}, got '{self.energy_curvature}'",
        )
        require(self.hessian_samples >= 0, "hessian_samples", f"must be >= 0, got {self.hessian_samples}")
        require(self.average >= 0, "average", f"must be >= 0, got {self.average}")
        require(
            self.average_hessian_samples >= 0,
            "average_hessian_samples",
            f"must be >= 0, got {self.average_hessian_samples}",
        )


@dataclass
class LBFGSParams:
    name: str = "lbfgs"
    lr: float = 1.0
    max_iters: int = 200  # L-BFGS iterations per time step
    init_max_iters: int = 2000  # step 0: L-BFGS iterations fitting the initial condition
    history: int = 50  # curvature pairs kept
    tol: float = 1e-9  # stop when the gradient's largest entry is below this
    rtol: float = 1e-12  # stop when the objective or step changes by less than this
    init_rtol: float = 1e-12  # rtol of step 0

    def validate(self) -> None:
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.max_iters >= 1, "max_iters", f"must be >= 1, got {self.max_iters}")
        require(self.init_max_iters >= 1, "init_max_iters", f"must be >= 1, got {self.init_max_iters}")
        require(self.history >= 1, "history", f"must be >= 1, got {self.history}")
        require(self.tol >= 0, "tol", f"must be >= 0, got {self.tol}")
        require(self.rtol >= 0, "rtol", f"must be >= 0, got {self.rtol}")
        require(self.init_rtol >= 0, "init_rtol", f"must be >= 0, got {self.init_rtol}")

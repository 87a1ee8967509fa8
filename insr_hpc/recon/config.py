"""Typed config of the ``recon`` workload (``workload: recon``).

A sibling of :class:`insr_hpc.config.schema.Config`: same top-level keys for what every
workload shares (name, seed, device, network, output.root, launch, sweep), and its own
``data``, ``task`` and ``train`` sections.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from insr_hpc.config.schema import KEYS_OF, LaunchConfig, RunIdentity, SweepConfig, check_text, require
from insr_hpc.errors import ConfigError
from insr_hpc.fields.registry import MODELS

TASKS = ("task1", "task2", "task3", "task4")


@dataclass
class DataConfig:
    # a netCDF file or Zarr store; "sample:NAME" is NAME inside the iris-sample-data package;
    # "synthetic:NAME[:SEED]" a field of insr_hpc/recon/synthetic.py (e.g. synthetic:bumps_front)
    path: str = "sample:A1B_north_america.nc"
    variable: str = "air_temperature"

    def validate(self) -> None:
        require(bool(self.path), "path", "must be a netCDF file or Zarr store path")
        require(bool(self.variable), "variable", "must name a data variable")
        # checked before any run directory is made: the file, the variable, its lat/lon
        from insr_hpc.errors import InsrError
        from insr_hpc.recon.data import check_field, check_path

        try:
            check_path(self.path)
        except InsrError as exc:
            raise ConfigError("path", str(exc).split(" ", 1)[1]) from None
        try:
            check_field(self.path, self.variable)
        except InsrError as exc:
            text = str(exc)
            raise ConfigError("variable" if text.startswith("data.variable") else "path", text.split(" ", 1)[1]) from None


@dataclass
class TaskConfig:
    """Which points are observed (Luo et al. 2024, sec. 4): task1 fixed count, fixed
    positions; task2 random count, fixed positions; task3 fixed count, random positions
    per time step; task4 random count, random positions. Random counts are drawn per time
    step uniformly between ``ratio_min`` and ``ratio`` of the valid grid points."""

    name: str = "task1"
    ratio: float = 0.05
    ratio_min: float = 0.01
    seed: int = 3407

    def validate(self) -> None:
        require(self.name in TASKS, "name", f"expected one of {', '.join(TASKS)}, got '{self.name}'")
        require(0 < self.ratio <= 1, "ratio", f"must be in (0, 1], got {self.ratio}")
        require(0 < self.ratio_min <= self.ratio, "ratio_min", f"must be in (0, ratio={self.ratio}], got {self.ratio_min}")


@dataclass
class TrainConfig:
    """Training recipe. The defaults are the MMGN authors' (Luo et al. 2024, their
    Lightning configuration): L1 loss summed over the batch's points, AdamW lr 5e-3 and
    weight decay 1e-5, lr × 0.99 per epoch, the global gradient norm clipped to 0.999
    (with a summed loss every step is clipped: a unit-norm step direction), 200 epochs,
    batches of 16 time steps."""

    epochs: int = 200
    batch_steps: int = 16  # time steps per optimiser step (all their observed points)
    lr: float = 5e-3
    # network.model → lr, overriding ``lr`` (SIREN at 5e-3 collapses to a constant field)
    lr_by_model: dict[str, float] = field(default_factory=lambda: {"siren": 1e-4}, metadata={KEYS_OF: "network"})
    weight_decay: float = 1e-5
    lr_decay: float = 0.99  # multiplied into the lr after every epoch
    loss_reduction: str = "sum"  # L1 over the batch's points: sum (the authors') | mean
    grad_clip: float = 0.999  # max global gradient norm; 0 = off
    # fraction of each time step's observations held back for validation on tasks 3–4
    # (positions redrawn); 0 turns validation off on every task
    validation: float = 0.1
    # tasks 1–2 (fixed positions): fraction of the sensors held back whole (enough of them
    # to count: 10 % of A1B's 91 sensors at 5 % is 9)
    validation_sensors: float = 0.25
    cv_folds: int = 10  # validation clusters are dealt into this many folds (the hybrid's gate, the CV spread)
    cv_tiles: int = 6  # tasks 3–4: a validation cluster is one of cv_tiles × cv_tiles lat/lon blocks
    # fewer independent validation clusters (sensors, tiles) than this behind a selection:
    # the run carries the warning thin_validation (store attrs, run.json, status, report)
    min_clusters: int = 20
    select: str = "best"  # weights kept at the end: best (lowest validation MSE) | last
    patience: int = 0  # stop after this many epochs without a better validation MSE; 0 = never
    # guard rails: a run is `suspect` (not `done`) when its reconstruction leaves the
    # training observations' range [lo, hi] by more than guard_range·(hi − lo), or its
    # final validation MSE is more than guard_growth × its best
    guard_range: float = 1.0  # suspect when the field leaves the observed range by this × its width
    guard_growth: float = 10.0  # suspect when the final validation MSE exceeds this × its best
    eval_every: int = 10  # epochs between full-grid errors (always at the last epoch)
    checkpoint_every: int = 10  # epochs between resume checkpoints (always at the last epoch)
    progress_every: int = 0  # epochs between progress lines when stdout is not a terminal; 0 = eval_every

    def validate(self) -> None:
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_steps >= 1, "batch_steps", f"must be >= 1, got {self.batch_steps}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        for name, lr in self.lr_by_model.items():
            require(lr > 0, f"lr_by_model.{name}", f"must be > 0, got {lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(0 < self.lr_decay <= 1, "lr_decay", f"must be in (0, 1], got {self.lr_decay}")
        require(self.loss_reduction in ("sum", "mean"), "loss_reduction", f"expected sum or mean, got '{self.loss_reduction}'")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(0 <= self.validation < 1, "validation", f"must be in [0, 1), got {self.validation}")
        require(0 < self.validation_sensors < 1, "validation_sensors", f"must be in (0, 1), got {self.validation_sensors}")
        require(self.cv_folds >= 2, "cv_folds", f"must be >= 2, got {self.cv_folds}")
        require(self.cv_tiles >= 1, "cv_tiles", f"must be >= 1, got {self.cv_tiles}")
        require(self.min_clusters >= 1, "min_clusters", f"must be >= 1, got {self.min_clusters}")
        require(self.select in ("best", "last"), "select", f"expected best or last, got '{self.select}'")
        require(self.select == "last" or self.validation > 0, "select", "'best' needs train.validation > 0")
        require(self.patience >= 0, "patience", f"must be >= 0, got {self.patience}")
        require(self.patience == 0 or self.validation > 0, "patience", "early stopping needs train.validation > 0")
        require(self.guard_range > 0, "guard_range", f"must be > 0, got {self.guard_range}")
        require(self.guard_growth > 1, "guard_growth", f"must be > 1, got {self.guard_growth}")
        require(self.eval_every >= 1, "eval_every", f"must be >= 1, got {self.eval_every}")
        require(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        require(self.progress_every >= 0, "progress_every", f"must be >= 0, got {self.progress_every}")

    def validation_fraction(self, task: str) -> float:
        """The fraction :func:`~insr_hpc.recon.tasks.validation_split` holds back on ``task``:
        of the sensors (tasks 1–2), or of each time step's observations (tasks 3–4)."""
        if self.validation <= 0:
            return 0.0
        return self.validation_sensors if task in ("task1", "task2") else self.validation

    def lr_for(self, model: str) -> float:
        return float(self.lr_by_model.get(model, self.lr))


@dataclass
class ReconOutputConfig:
    root: str = "runs"
    log_every: int = 1  # TensorBoard: every k-th batch loss
    figure_every: int = 50  # TensorBoard: true/reconstructed/error maps every k epochs (0 = last only)
    overwrite: bool = False

    def validate(self) -> None:
        require(bool(self.root), "root", "must be a directory path")
        check_text(self.root, "root")  # the sweep directory: in #SBATCH --output=… and command lines
        require(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        require(self.figure_every >= 0, "figure_every", f"must be >= 0, got {self.figure_every}")


# section → (the key that selects its dataclass, the registry of those dataclasses)
TAGGED_SECTIONS = {"network": ("model", MODELS)}


@dataclass
class ReconConfig(RunIdentity):
    name: str = "recon"
    workload: str = "recon"
    seed: int = 3407  # network initialisation and batch order
    device: str = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    network: Any = None  # dataclass chosen by network.model
    output: ReconOutputConfig = field(default_factory=ReconOutputConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

    def validate(self) -> None:
        super().validate()
        model = getattr(self.network, "model", None)
        if model is not None and MODELS.has(model, "hybrid"):
            require(self.train.validation > 0, "train.validation",
                    f"network.model={model} fits the weight of its network on the validation observations: must be > 0")

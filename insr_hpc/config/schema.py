"""Typed config schema shared by every workload.

Sections whose shape depends on a name (``problem`` by ``case``, ``network`` by
``model``, ``integrator`` by ``name``) are typed ``Any`` here and given their
dataclass at load time from the registry entry that the name selects
(see :mod:`insr_hpc.config.load`). Every dataclass may define ``validate()``,
which raises :class:`~insr_hpc.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from insr_hpc.errors import UNPRINTABLE_CATEGORIES, ConfigError


# Field metadata understood by the loader (insr_hpc.config.load.check_config):
ALLOW_INF = "allow_inf"  # this float may be ±inf (NaN never is; every other number must be finite)
KEYS_OF = "keys_of"  # this map's keys are names of the registry of that tagged section, e.g. "network"

# Names that would not be one plain directory under output.root.
_NOT_A_NAME = (".", "..")


def require(cond: bool, key: str, message: str) -> None:
    """Raise a ConfigError for ``key`` unless ``cond``. ``key`` is relative to the section."""
    if not cond:
        raise ConfigError(key, message)


def check_text(value: str | None, key: str) -> None:
    """``value`` (a string that reaches a batch script, a shell or a command line) holds
    no control or format character: no newline, carriage return, NUL, tab, escape, no
    Unicode line separator (each could end a line of an sbatch script and start another)."""
    if value is None or value.isprintable():  # fast path: a printable string holds none
        return
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in UNPRINTABLE_CATEGORIES:
            raise ConfigError(key, f"must not contain a control character (U+{ord(ch):04X} at position {i}), "
                              f"got {value!r}")


# The characters of a ``name``: it names a directory, the Slurm job (--job-name) and
# reaches command lines, so it keeps to the POSIX portable file name set, plus = and ,.
NAME_CHARS = "A-Z a-z 0-9 . _ - + = ,"
_NAME = re.compile(r"[A-Za-z0-9._+=,-]+")


@dataclass
class TimeConfig:
    dt: float = 0.05
    steps: int = 240  # time steps after the initial condition

    def validate(self) -> None:
        require(self.dt > 0, "dt", f"must be > 0, got {self.dt}")
        require(self.steps >= 1, "steps", f"must be >= 1, got {self.steps}")


@dataclass
class SamplingConfig:
    interior: int = 5000  # spatial samples per iteration (global batch over all DDP ranks)
    boundary: int = 100

    def validate(self) -> None:
        require(self.interior >= 1, "interior", f"must be >= 1, got {self.interior}")
        require(self.boundary >= 0, "boundary", f"must be >= 0, got {self.boundary}")


@dataclass
class OutputConfig:
    root: str = "runs"
    resolution: int = 512  # grid points per spatial dimension of the stored field
    log_every: int = 10  # TensorBoard: every k-th optimiser iteration is logged
    figure_every: int = 20  # TensorBoard: a field-vs-reference figure every k steps
    overwrite: bool = False  # True: delete an existing store for this run and start over

    def validate(self) -> None:
        require(bool(self.root), "root", "must be a directory path")
        check_text(self.root, "root")  # the sweep directory: in #SBATCH --output=… and command lines
        require(self.resolution >= 2, "resolution", f"must be >= 2, got {self.resolution}")
        require(self.log_every >= 1, "log_every", f"must be >= 1, got {self.log_every}")
        require(self.figure_every >= 0, "figure_every", f"must be >= 0, got {self.figure_every}")


@dataclass
class GuardConfig:
    """Divergence guard of a PDE run: a step that breaks it fails the run, uncommitted."""

    max_error: float = 10.0  # fail when the case's first error metric (relative L2 vs the reference) exceeds this; 0 = off

    def validate(self) -> None:
        require(self.max_error >= 0, "max_error", f"must be >= 0 (0 = off), got {self.max_error}")


@dataclass
class RayConfig:
    address: str | None = None  # None: start a local Ray runtime
    num_cpus: float = 1.0  # per run
    num_gpus: float = 0.0
    memory_gb: float = 0.0  # 0 = no reservation

    def validate(self) -> None:
        check_text(self.address, "address")
        require(self.num_cpus >= 0, "num_cpus", f"must be >= 0, got {self.num_cpus}")
        require(self.num_gpus >= 0, "num_gpus", f"must be >= 0, got {self.num_gpus}")
        require(self.memory_gb >= 0, "memory_gb", f"must be >= 0, got {self.memory_gb}")


@dataclass
class SlurmConfig:
    """Nodes and tasks of a run are ``launch.ddp.nodes`` and ``launch.ddp.nproc_per_node``
    (the old ``launch.slurm.nodes`` and ``tasks_per_node`` are read as those, with a note)."""

    partition: str | None = None
    time_min: int = 60
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    mem_gb: float = 0.0
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 64  # runs of the sweep running at once, over all its arrays (--array=…%k)
    max_array_size: int = 0  # tasks per job array; 0: the cluster's MaxArraySize (larger sweeps: several arrays)
    extra_sbatch: list[str] = field(default_factory=list)  # "key=value" → "#SBATCH --key=value"
    setup: list[str] = field(default_factory=list)  # shell lines run before the job (module load …)
    signal_delay_s: int = 90  # USR2 this many seconds before the time limit: checkpoint + requeue

    def validate(self) -> None:
        for key in ("time_min", "cpus_per_task", "array_parallelism"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(self.gpus_per_node >= 0, "gpus_per_node", f"must be >= 0, got {self.gpus_per_node}")
        require(self.mem_gb >= 0, "mem_gb", f"must be >= 0, got {self.mem_gb}")
        require(self.max_array_size >= 0, "max_array_size", f"must be >= 0 (0: the cluster's MaxArraySize), got {self.max_array_size}")
        require(self.signal_delay_s >= 0, "signal_delay_s", f"must be >= 0, got {self.signal_delay_s}")
        # Every string below becomes a line (or part of one) of the sbatch script.
        for key in ("partition", "account", "qos"):
            check_text(getattr(self, key), key)
        for i, line in enumerate(self.extra_sbatch):
            ok = isinstance(line, str) and line.lstrip("-").split("=", 1)[0].strip() != ""
            require(ok, "extra_sbatch", f"expected 'key=value' or 'flag' entries, got {line!r}")
            check_text(line, f"extra_sbatch[{i}]")
            option = line.lstrip("-").partition("=")[0].strip()
            require(_SBATCH_OPTION.fullmatch(option) is not None, f"extra_sbatch[{i}]",
                    f"expected an sbatch option name (letters, digits, - and _) before '=', got {option!r}")
        for i, line in enumerate(self.setup):
            check_text(line, f"setup[{i}]")


_SBATCH_OPTION = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass
class DDPConfig:
    nproc_per_node: int = 1
    nodes: int = 1
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU

    def validate(self) -> None:
        require(self.nproc_per_node >= 1, "nproc_per_node", f"must be >= 1, got {self.nproc_per_node}")
        require(self.nodes >= 1, "nodes", f"must be >= 1, got {self.nodes}")
        require(self.backend in ("auto", "gloo", "nccl"), "backend", f"expected auto, gloo or nccl, got '{self.backend}'")

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nodes


@dataclass
class LaunchConfig:
    backend: str = "local"
    workers: int = 0  # local backend: concurrent runs; 0 = cores // threads_per_job
    threads_per_job: int = 1  # torch intra-op threads per run
    max_retries: int = 0
    grace_s: float = 30.0  # local backend: on SIGTERM/SIGINT a worker gets this long to stop at a step boundary, then is killed
    pack: int = 1  # local backend: compatible PDE runs per process, solved batched under vmap (docs/insr.md "Packed sweeps")
    ray: RayConfig = field(default_factory=RayConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    ddp: DDPConfig = field(default_factory=DDPConfig)

    def validate(self) -> None:
        require(self.workers >= 0, "workers", f"must be >= 0, got {self.workers}")
        require(self.threads_per_job >= 1, "threads_per_job", f"must be >= 1, got {self.threads_per_job}")
        require(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        require(self.grace_s >= 0, "grace_s", f"must be >= 0, got {self.grace_s}")
        require(self.pack >= 1, "pack", f"must be >= 1, got {self.pack}")


@dataclass
class SweepConfig:
    """``grid``: dotted key → list of values, expanded as a Cartesian product.
    ``zip``: dotted key → list of values, all lists of one length, taken row by row.
    The sweep is grid × zip rows; an empty sweep is one run."""

    grid: dict[str, Any] = field(default_factory=dict)
    zip: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, Any] = field(default_factory=dict)  # key → a run-id name per value
    max_points: int = 100_000  # refuse a sweep of more points (counted before any is made)

    def validate(self) -> None:
        require(self.max_points >= 1, "max_points", f"must be >= 1, got {self.max_points}")


def check_name(name: str) -> None:
    """``name`` must be one plain directory name (the sweep directory under output.root);
    its length against the file system's limit is checked where the root is known."""
    require(bool(name), "name", "must be a non-empty directory name")
    require(name not in _NOT_A_NAME, "name", f"'{name}' is not a directory of its own (the sweep directory must lie "
            "inside output.root)")
    seps = sorted({"/", "\\", os.sep, os.altsep or "/"} & set(name))
    require(not seps, "name", f"must be one directory name, without {' or '.join(repr(c) for c in seps)}, got {name!r}")
    check_text(name, "name")
    bad = sorted(set(_NAME.sub("", name)))
    require(not bad, "name", f"must keep to the characters {NAME_CHARS} (a portable directory and job name), "
            f"got {name!r}, which holds {''.join(bad)!r}")
    require(not name.startswith("-"), "name", f"must not start with '-' (it would read as an option), got {name!r}")


@dataclass
class RunIdentity:
    """The top-level keys every workload's config shares (subclasses add sections)."""

    name: str = "run"
    workload: str = "pde"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def validate(self) -> None:
        check_name(self.name)
        dev = self.device
        ok = dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())
        require(ok, "device", f"expected auto, cpu, cuda or cuda:N, got '{dev}'")


@dataclass
class Config(RunIdentity):
    """The PDE workload's config."""
    problem: Any = None  # dataclass chosen by problem.case
    network: Any = None  # dataclass chosen by network.model
    integrator: Any = None  # dataclass chosen by integrator.name
    optim: Any = None  # dataclass chosen by optim.name (adam | gauss_newton | lbfgs)
    time: TimeConfig = field(default_factory=TimeConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)

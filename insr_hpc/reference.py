"""The configuration reference (docs/config.md), generated from the typed schema.

    python -m insr_hpc.reference            # print it
    python -m insr_hpc.reference --write    # rewrite docs/config.md

Every section and key of both workloads, and of every registered case, model and
integrator: type, default and a one-line meaning. The meaning is the comment on the
field's line (or the comment line above it) in the dataclass's source, else an entry
of ``MEANINGS`` below. tests/test_config_reference.py fails when docs/config.md is not
what this module generates or when a key has no meaning, so the page cannot drift.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from typing import Any

from insr_hpc.catalog import CATALOG
from insr_hpc.fields import MODELS
from insr_hpc.pde.cases import CASES
from insr_hpc.pde.integrators import INTEGRATORS
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.workloads import WORKLOADS

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "config.md")
UNDOCUMENTED = "(undocumented)"

# Meanings of keys whose dataclass field carries no comment ("Class.field").
MEANINGS: dict[str, str] = {
    "RunIdentity.name": "sweep directory name: runs go to output.root/name/run_id/",
    "RunIdentity.workload": "what to run: pde (INSR time stepping) or recon (field reconstruction)",
    "RunIdentity.seed": "seed of the network initialisation and of every sample batch",
    "ReconConfig.name": "sweep directory name: runs go to output.root/name/run_id/",
    "ReconConfig.workload": "recon for this config class",
    "ReconConfig.device": "auto | cpu | cuda | cuda:N",
    "AdamParams.lr": "Adam learning rate of every time step after the first",
    "AdamParams.max_iters": "most Adam iterations per sub-problem of a step",
    "AdamParams.tol": "stop a sub-problem once a batch loss falls below this",
    "AdamParams.rtol": "stop after `patience` windows that improved the best window mean by less than this (relative)",
    "AdamParams.window": "iterations per window of the plateau test",
    "AdamParams.patience": "windows without relative improvement > rtol before stopping",
    "TimeConfig.dt": "time step Δt",
    "SamplingConfig.boundary": "boundary samples per iteration",
    "OutputConfig.root": "directory that holds the sweep directories",
    "LaunchConfig.backend": "where submit runs the sweep: local | ray | slurm",
    "LaunchConfig.max_retries": "times a failed run is started again by the backend",
    "LaunchConfig.ray": "Ray backend settings",
    "LaunchConfig.slurm": "Slurm backend settings",
    "LaunchConfig.ddp": "data-parallel ranks inside one run",
    "SlurmConfig.partition": "sbatch --partition (None: the cluster default)",
    "SlurmConfig.time_min": "sbatch --time in minutes per array task",
    "SlurmConfig.cpus_per_task": "sbatch --cpus-per-task",
    "SlurmConfig.gpus_per_node": "GPUs per node (--gres=gpu:N)",
    "SlurmConfig.mem_gb": "memory per node in GB (0: cluster default)",
    "SlurmConfig.account": "sbatch --account",
    "SlurmConfig.qos": "sbatch --qos",
    "DDPConfig.nproc_per_node": "ranks (processes) per node of one run: Slurm --ntasks-per-node (was launch.slurm.tasks_per_node), local backend torchrun --nproc_per_node",
    "DDPConfig.nodes": "nodes of one run: Slurm --nodes (was launch.slurm.nodes); local backend: 1",
    "SweepConfig.grid": "dotted key → list of values, expanded as a Cartesian product",
    "SweepConfig.zip": "dotted key → equally long lists, taken row by row (times the grid)",
    "DataConfig.variable": "name of the variable to reconstruct in the source",
    "TaskConfig.name": "observation task: task1 | task2 | task3 | task4 (see the task section)",
    "TaskConfig.ratio": "fraction of valid grid points observed (random tasks: the largest fraction)",
    "TaskConfig.ratio_min": "smallest observed fraction of the random-count tasks (task2, task4)",
    "TaskConfig.seed": "seed of the observation mask",
    "TrainConfig.epochs": "training epochs (passes over all time steps)",
    "TrainConfig.lr": "AdamW learning rate (unless lr_by_model names the model)",
    "TrainConfig.weight_decay": "AdamW weight decay",
    "ReconOutputConfig.root": "directory that holds the sweep directories",
    "ReconOutputConfig.overwrite": "true: delete the run's results once at run/submit and start over",
    "ReconConfig.data": "the gridded field to reconstruct",
    "ReconConfig.task": "which points are observed",
    "ReconConfig.train": "optimiser and schedule",
    "ReconConfig.output": "where results go and what TensorBoard gets",
    "ReconConfig.launch": "backends, as for the PDE workload",
    "ReconConfig.sweep": "parameter sweep, as for the PDE workload",
    "Config.optim": "the optimiser of each sub-problem (optim.name) and its stopping rule",
    "LBFGSParams.lr": "step length scale of L-BFGS (1: the quasi-Newton step)",
    "Config.time": "time stepping",
    "Config.sampling": "spatial samples per iteration",
    "Config.output": "where results go, stored grid, TensorBoard",
    "Config.launch": "backends: local, Ray, Slurm; DDP",
    "Config.sweep": "parameter sweep (grid × zip)",
    "AdamParams.init_lr": "Adam learning rate of step 0 (fitting the initial condition)",
    "AdamParams.init_max_iters": "most Adam iterations of step 0",
    "AdamParams.init_rtol": "rtol of step 0 (stricter: a good initial fit pays off at every later step)",
    "AdamParams.grad_clip": "max gradient norm per iteration; 0 = off",
    "RayConfig.num_gpus": "GPUs reserved per run",
    "AdvectionParams.length": "domain length L: x ∈ [−L/2, L/2]",
    "AdvectionParams.speed": "advection speed a in u_t + a u_x = 0",
    "AdvectionParams.mu": "centre of the initial profile",
    "AdvectionParams.sigma": "width of the initial Gaussian (envelope)",
    "AdvectionParams.boundary_weight": "weight of the boundary term (u = 0 at ±L/2) in each step's loss",
    "ElasticityParams.length": "bar length L (reference configuration x ∈ [0, L])",
    "ElasticityParams.height": "bar height H (y ∈ [−H/2, H/2])",
    "ElasticityParams.density": "mass density ρ",
    "ElasticityParams.youngs_modulus": "Young's modulus E of the neo-Hookean material",
    "ElasticityParams.poisson_ratio": "Poisson ratio ν",
    "ElasticityParams.contact_stiffness": "penalty stiffness of the ground contact",
    "ElasticityParams.fem_ny": "FEM reference mesh cells across the height",
    "FFNGaussianParams.width": "hidden units",
    "FFNGaussianParams.depth": "hidden layers",
    "FFNGaussianParams.features": "random Fourier features (rows of B)",
    "FFNPositionalParams.width": "hidden units",
    "FFNPositionalParams.depth": "hidden layers",
    "MMGNParams.input_scale": "highest input frequency the Gabor filters span (rad per unit)",
    "MMGNParams.beta": "rate β of the filters' Gamma(α/(L+1), β) scale prior",
    "ResMLPParams.width": "hidden units",
    "ResMLPParams.depth": "residual blocks",
    "SirenParams.width": "hidden units per layer",
    "SirenParams.omega0_hidden": "frequency ω_h of the hidden layers",
}


def _comments(cls: type) -> dict[str, str]:
    """field → the comment on its line, or on the comment-only line just above it."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    above = ""
    for line in lines:
        m = re.match(r"^\s+(\w+):\s*[^=#]+(?:=[^#]*)?(?:#\s*(.+))?$", line)
        if m and not line.strip().startswith("#"):
            comment = (m.group(2) or "").strip()
            if comment.startswith("noqa") or comment.startswith("type:"):
                comment = ""
            out[m.group(1)] = comment or above
            above = ""
        elif line.strip().startswith("#"):
            above = line.strip().lstrip("#").strip()
        else:
            above = ""
    return out


def _type_name(tp: Any) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    return text.replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "(required)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def _meaning(cls: type, name: str, comments: dict[str, str]) -> str:
    for klass in cls.__mro__:
        text = MEANINGS.get(f"{klass.__qualname__}.{name}") or (comments if klass is cls else _comments(klass)).get(name)
        if text:
            return text.replace("|", "\\|")
    return UNDOCUMENTED


def _table(cls: type, prefix: str, skip: tuple[str, ...] = ()) -> tuple[list[str], list[tuple[str, type]]]:
    """Rows for the scalar keys of ``cls``; nested dataclass sections returned separately."""
    comments = _comments(cls)
    rows, nested = [], []
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory()):  # type: ignore[misc]
            nested.append((f"{prefix}{f.name}", type(f.default_factory())))  # type: ignore[misc]
            continue
        rows.append(f"| `{prefix}{f.name}` | {_type_name(hints[f.name])} | {_default(f)} | {_meaning(cls, f.name, comments)} |")
    return rows, nested


HEAD = "| key | type | default | meaning |\n|---|---|---|---|"


def _section(title: str, cls: type, prefix: str, skip: tuple[str, ...] = (), intro: str = "") -> list[str]:
    rows, nested = _table(cls, prefix, skip)
    out = [f"### {title}", ""]
    if intro:
        out += [intro, ""]
    if rows:
        out += [HEAD, *rows, ""]
    for sub_prefix, sub in nested:
        out += _section(f"`{sub_prefix}`", sub, sub_prefix + ".")
    return out


def _doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.split("\n\n")[0].replace("\n", " ").strip()


def _registry(title: str, key: str, registry, prefix: str) -> list[str]:
    out = [f"## `{prefix}`: {title}", "", f"`{key}` picks one of: " + ", ".join(f"`{n}`" for n in registry.names()) + ".", ""]
    for name in registry.names():
        entry = registry.get(name)
        params = getattr(entry, "Params", None)
        if params is None or not dataclasses.is_dataclass(params):
            continue
        intro = _doc_line(entry)
        out += _section(f"{key}: {name}", params, f"{prefix}.", skip=(key.split(".")[-1],), intro=intro)
    return out


def config_reference() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from the typed schema by `python -m insr_hpc.reference --write`; do not edit by hand",
        "(tests/test_config_reference.py fails when this page and the code disagree).",
        "Keys are dotted as on the command line (`insr-hpc run CONFIG time.dt=0.1`).",
        "",
    ]
    for workload in WORKLOADS.names():
        cls = CATALOG.config_class(workload)
        tagged = CATALOG.tagged_sections(workload)
        lines += [f"## workload `{workload}`: `{cls.__module__}.{cls.__name__}`", ""]
        lines += _section("top level", cls, "", skip=tuple(f.name for f in dataclasses.fields(cls)
                                                                if f.name in tagged))
        for section, (tag, _) in tagged.items():
            lines += [f"Section `{section}` is typed by `{section}.{tag}`: see its table below.", ""]
    lines += _registry("PDE cases", "problem.case", CASES, "problem")
    lines += _registry("networks", "network.model", MODELS, "network")
    lines += _registry("time integrators", "integrator.name", INTEGRATORS, "integrator")
    lines += _registry("optimisers", "optim.name", OPTIMIZERS, "optim")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = config_reference()
    if "--write" in argv:
        with open(DOC, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

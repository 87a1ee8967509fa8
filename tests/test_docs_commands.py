"""The command lines in README.md's and docs/tutorial.md's fenced ```bash blocks work.

Every line is split at ``&&`` into commands; a command is either skipped (SKIP names the
pattern and why) or run on tiny settings: the overrides in OVERRIDES for its config file
are appended to it, and REPLACE shrinks the few arguments a tiny run cannot honour. The
commands run in order in one temporary directory holding copies of configs/ (links to
jobs/ and benchmarks/), so a later command (``report runs/euler_sweep``) sees what an
earlier one made, and nothing is written into the checkout.

* fast (unmarked): ``--help`` of every documented command and ``--dry-run`` of every
  documented ``submit``;
* slow: every command that is not skipped, expecting exit 0 (EXIT says otherwise).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

DOCS = ("README.md", os.path.join("docs", "tutorial.md"))

# Commands not run, by regular expression (searched in the command), with the reason.
SKIP: list[tuple[str, str, bool]] = [  # (pattern, reason, whether its --help is still checked)
    (r"^python3 -m venv\b", "creates the virtual environment: the quick start CI runs", False),
    (r"\bpip install\b", "installs software: the quick start CI runs", False),
    (r"^git clone\b", "fetches the repository", False),
    (r"^source\b", "changes the calling shell only", False),
    (r"^cd\b", "enters the clone: these commands run in a copy of the checkout's configs", False),
    (r"-m pytest\b", "the test suite itself", False),
    (r"^tensorboard\b", "starts a server that does not exit", False),
    (r"^(sbatch|srun|mpiexec)\b", "needs Slurm or MPI (tests/test_slurm*.py, tests/test_mpi_jobs.py)", False),
    (r"--backend (ray|slurm)\b", "needs a Ray runtime or a Slurm cluster (tests/test_ray*.py, tests/test_slurm*.py)", True),
    (r"benchmarks/pde_baselines\.py", "a benchmark of minutes (FEM and 256² references)", True),
    (r"submit configs/reconstruct_sweep\.yaml", "dozens of reconstruction runs (hours); its --dry-run is checked", True),
    (r"benchmarks/recon_table\.py", "needs the finished reconstruct_sweep above", True),
    (r"submit configs/reconstruct\.yaml .*sweep\.grid", "the default over four tasks (an hour); its --dry-run is checked",
     True),
]

_PDE = ["device=cpu", "output.figure_every=0", "time.steps=2", "optim.max_iters=3", "optim.init_max_iters=5",
        "optim.init_warmup=5", "sampling.interior=64", "network.width=8"]
_EULER = [*_PDE, "sampling.boundary=16", "output.resolution=16", "problem.reference_resolution=32"]
_RECON = ["device=cpu", "output.figure_every=0", "train.epochs=1", "train.batch_steps=120", "network.width=16",
          "network.layers=2"]
# Appended to every command that names the config file (submit, run).
OVERRIDES: dict[str, list[str]] = {
    "configs/advection.yaml": [*_PDE, "output.resolution=32"],
    "configs/euler.yaml": _EULER,
    # two Δt (the tutorial's convergence_order then has two points) × both initial conditions
    "configs/euler_sweep.yaml": [*_EULER, "sweep.grid={time.dt: [0.05, 0.1], network.width: [8], sampling.interior: [64]}"],
    "configs/elasticity.yaml": [*_PDE, "output.resolution=16", "problem.fem_nx=16", "problem.fem_ny=4",
                                "optim.cg_iters=5", "optim.hessian_samples=32", "optim.average=0"],
    "configs/reconstruct.yaml": _RECON,
    "configs/reconstruct_sweep.yaml": [],
}
# Model-specific keys: the recon overrides above are for MMGN; other models take theirs.
MODEL_OVERRIDES = {"network.model=kriging": ["device=cpu", "output.figure_every=0", "network.fit_every=100000",
                                             "task.ratio=0.01"]}
# Arguments a tiny run cannot honour: (documented, used instead).
REPLACE = [("--step 20", "--step 2"), ("--resolution 1024", "--resolution 48")]  # the tiny sweep has 2 steps
# Placeholders of the docs, made one word; the slow test fills them in.
PLACEHOLDERS = {"<best run>": "BEST_RUN", "<this repository>": "REPOSITORY"}
EXIT: dict[str, int] = {}  # command prefix → documented exit code, where not 0


def commands(doc: str) -> list[tuple[str, int, str]]:
    """(doc, line, command) of every command in the doc's ```bash blocks, comments dropped."""
    text = open(os.path.join(REPO, doc), encoding="utf-8").read()
    out = []
    for block in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        first = text[: block.start()].count("\n") + 2
        for k, line in enumerate(block.group(1).splitlines()):
            parts: list[list[str]] = [[]]
            for old, new in PLACEHOLDERS.items():
                line = line.replace(old, new)
            for word in shlex.split(line, comments=True):
                if word == "&&":
                    parts.append([])
                else:
                    parts[-1].append(word)
            out += [(doc, first + k, shlex.join(part)) for part in parts if part]
    return out


ALL = [c for doc in DOCS for c in commands(doc)]


def skipped(command: str) -> str | None:
    return next((why for pattern, why, _ in SKIP if re.search(pattern, command)), None)


def helpable(command: str) -> bool:
    return all(ok for pattern, _, ok in SKIP if re.search(pattern, command))


def argv(command: str, tiny: bool = True) -> list[str]:
    """The command as this test runs it: this interpreter for python / insr-hpc, the
    tiny overrides appended."""
    for old, new in REPLACE if tiny else ():
        command = command.replace(old, new)
    words = shlex.split(command)
    head = os.path.basename(words[0])
    if head == "insr-hpc":
        words = [sys.executable, "-m", "insr_hpc", *words[1:]]
    elif head in ("python", "python3"):
        words = [sys.executable, *words[1:]]
    else:
        raise AssertionError(f"not a documented kind of command (insr-hpc, python): {command!r}")
    if tiny and len(words) > 4 and words[3] in ("run", "submit") and words[4] in OVERRIDES:
        model = next((m for m in MODEL_OVERRIDES if m in words), None)
        extra = MODEL_OVERRIDES[model] if model else OVERRIDES[words[4]]
        words += extra
    return words


def test_the_docs_have_the_commands_this_test_knows():
    assert len(ALL) > 20
    for doc, line, command in ALL:
        if not skipped(command):
            argv(command)  # raises on a kind of command the test cannot run


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    import shutil

    shutil.copytree(os.path.join(REPO, "configs"), tmp_path / "configs")
    for name in ("jobs", "benchmarks"):
        os.symlink(os.path.join(REPO, name), tmp_path / name)
    (tmp_path / "docs").mkdir()  # benchmarks resolve docs/ next to their (linked) directory: here
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _run(words: list[str], cwd, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    return subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_documented_command_has_help(workdir):
    from insr_hpc.cli import main

    seen: set[tuple[str, ...]] = set()
    for _, _, command in ALL:
        if not helpable(command):
            continue
        words = argv(command, tiny=False)
        key = tuple(words[1:4]) if words[1] == "-m" else (words[1],)
        if key in seen:
            continue
        seen.add(key)
        if words[1] == "-m":  # insr-hpc SUBCOMMAND: in this process
            with pytest.raises(SystemExit) as exc:
                main([words[3], "--help"])
            assert exc.value.code == 0, command
        else:
            res = _run([sys.executable, words[1], "--help"], workdir, timeout=120)
            assert res.returncode == 0 and "usage:" in res.stdout, (command, res.stderr[-1000:])
    assert {k[2] for k in seen if len(k) == 3} >= {"run", "submit", "status", "cancel", "report", "render"}


def test_every_documented_submit_dry_runs(workdir, capsys):
    from insr_hpc.cli import main

    submits = [c for _, _, c in ALL if re.search(r"\bsubmit\b", c) and "--backend" not in c]
    assert len(submits) >= 3
    for command in submits:
        words = argv(command)
        args = [w for w in words[3:] if w != "--dry-run"] + ["--dry-run"]
        assert main(args) == 0, command
        out = capsys.readouterr().out
        assert "run(s) on backend 'local'" in out, out
    assert not os.path.exists(workdir / "runs")  # a dry run makes nothing


def test_doc_runs_do_not_collide():
    """Runs of one config that differ only in data or model must name another sweep
    directory, or the second meets the first's store and stops (output.overwrite)."""
    for doc in DOCS:
        seen: dict[str, str] = {}
        for _, line, command in commands(doc):
            words = shlex.split(command)
            if len(words) < 3 or os.path.basename(words[0]) != "insr-hpc" or words[1] != "run":
                continue
            name = next((w.split("=", 1)[1] for w in words if w.startswith("name=")), words[2])
            changed = tuple(sorted(w for w in words[3:] if w.startswith(("data.", "network.model=", "task."))))
            assert seen.setdefault(name, repr(changed)) == repr(changed), (
                f"{doc}:{line}: `{command}` writes runs/{name}/ like an earlier run with other settings: add name=…")


@pytest.mark.slow
def test_every_documented_command_runs_on_tiny_settings(workdir):
    """Every command of both docs, in order, in one directory (README's first, then the
    tutorial's: both use runs/euler_sweep, the tutorial's submit resumes finished runs)."""
    import csv

    done = []
    for doc, line, command in ALL:
        if skipped(command):
            continue
        if "BEST_RUN" in command:  # the tutorial's <best run>: the first row of the report's summary
            with open(workdir / "runs" / "euler_sweep" / "report" / "summary.csv", encoding="utf-8") as fh:
                best = next(csv.DictReader(fh))["run"]
            command = command.replace("BEST_RUN", best)
        words = argv(command)
        res = _run(words, workdir)
        expect = next((code for prefix, code in EXIT.items() if command.startswith(prefix)), 0)
        assert res.returncode == expect, f"{doc}:{line}: {command}\n{shlex.join(words)}\n{res.stdout[-1500:]}\n{res.stderr[-3000:]}"
        done.append(command)
    assert any("report runs/euler_sweep" in c for c in done) and any(c.startswith("insr-hpc render") for c in done)
    assert os.path.exists(workdir / "runs" / "euler_sweep" / "report" / "convergence.png")
    assert os.path.exists(workdir / "euler_1024.png") and os.path.exists(workdir / "euler_1024.zarr")

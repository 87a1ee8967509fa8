"""Switching a tagged section's class from the command line or a sweep (``optim.name=…``,
as a Hydra config group): the new class starts from its own defaults, the file's keys it
lacks are dropped with one note, explicit keys are never dropped."""

from __future__ import annotations

import dataclasses
import os

import pytest
import yaml
from _small import REPO, cli, write_config

from insr_hpc.catalog import CATALOG, load_config
from insr_hpc.config import expand as expand_mod
from insr_hpc.config import load_raw, sweep_points
from insr_hpc.errors import ConfigError
from insr_hpc.pde.optimizers import OPTIMIZERS
from insr_hpc.plan import plan_runs

# an Euler config whose optim block is Adam's (configs/euler.yaml ships Gauss–Newton)
EULER = os.path.join(REPO, "tests", "data", "euler_adam.yaml")
NOTE = "optim.name={new}: dropped the file's optim keys it does not take: {keys}"


def _file_optim(path: str) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh).get("optim") or {}


def _dropped(path: str, new: str) -> list[str]:
    """The file's optim keys that optimiser ``new`` lacks, sorted."""
    fields = {f.name for f in dataclasses.fields(OPTIMIZERS.get(new).Params)}
    return sorted(k for k in _file_optim(path) if k not in fields)


def test_gauss_newton_on_the_euler_config_starts_from_its_own_defaults(tmp_path):
    notes: list[str] = []
    plan = plan_runs(EULER, ["optim.name=gauss_newton", f"output.root={tmp_path}"], notes=notes)
    dropped = _dropped(EULER, "gauss_newton")
    assert "lr" in dropped
    assert notes == [NOTE.format(new="gauss_newton", keys=", ".join(dropped))]
    optim = plan.configs[0].optim
    defaults = OPTIMIZERS.get("gauss_newton").Params()
    assert optim.name == "gauss_newton"
    assert optim.damping == defaults.damping and optim.init_warmup == defaults.init_warmup
    file_optim = _file_optim(EULER)
    assert optim.max_iters == file_optim["max_iters"]  # a shared key is kept from the file
    assert optim.rtol == pytest.approx(file_optim["rtol"])
    assert plan.specs[0].config["optim"]["damping"] == defaults.damping and "lr" not in plan.specs[0].config["optim"]
    # the library loader agrees
    again: list[str] = []
    cfg = load_config(EULER, ["optim.name=gauss_newton"], notes=again)
    assert again == notes and cfg.optim == optim


def test_the_cli_dry_run_prints_the_note_once(tmp_path):
    res = cli("submit", EULER, "optim.name=gauss_newton", "--dry-run", f"output.root={tmp_path / 'out'}")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.strip().splitlines()
    keys = ", ".join(_dropped(EULER, "gauss_newton"))
    assert lines == [f"insr-hpc: note: {NOTE.format(new='gauss_newton', keys=keys)}"]
    assert "lr" in lines[0].rsplit(": ", 1)[1].split(", ")
    assert "1 run(s)" in res.stdout and not (tmp_path / "out").exists()


def test_a_sweep_notes_each_distinct_drop_once(tmp_path):
    """16 points switched by the command line: one note. A grid over optim.name (in the
    file's sweep): one note per optimiser that dropped keys, the full and the incremental
    expansion alike."""
    notes: list[str] = []
    plan = plan_runs(os.path.join(REPO, "configs", "euler_sweep.yaml"),
                     ["optim.name=adam", f"output.root={tmp_path}"], notes=notes)
    assert len(plan.specs) > 1 and len(notes) == 1 and "optim.name=adam" in notes[0]
    assert {c.optim.name for c in plan.configs} == {"adam"}

    with open(EULER, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data.update(output={"root": str(tmp_path)}, sweep={"grid": {"optim.name": ["adam", "gauss_newton", "lbfgs"],
                                                                "optim.max_iters": [7, 8]}})
    path = write_config(tmp_path, data)
    notes = []
    plan = plan_runs(path, notes=notes)
    expected = [NOTE.format(new=n, keys=", ".join(_dropped(EULER, n))) for n in ("gauss_newton", "lbfgs")
                if _dropped(EULER, n)]
    assert notes == expected
    raw = load_raw(path)
    points = sweep_points(raw)
    assert [(c.optim.name, c.optim.max_iters) for c in plan.configs] == [
        (p.overrides["optim.name"], p.overrides["optim.max_iters"]) for p in points]
    assert len(points) == 6
    adam = next(c.optim for c in plan.configs if c.optim.name == "adam")
    assert adam.lr == pytest.approx(_file_optim(EULER)["lr"])  # unchanged name: the file's keys as written
    full = expand_mod.expand_configs(raw, points, CATALOG, incremental=False, layers=(raw, {}))
    assert full == plan.configs


def test_an_explicit_unknown_key_is_still_an_error(tmp_path):
    res = cli("submit", EULER, "optim.name=gauss_newton", "optim.lr=1e-3", "--dry-run", f"output.root={tmp_path / 'o'}")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insr-hpc: error: optim.lr: unknown key"), res.stderr
    assert not (tmp_path / "o").exists()
    # a swept key is explicit too
    with pytest.raises(ConfigError, match=r"optim.init_lr: unknown key.*sweep point r000"):
        plan_runs(EULER, ["optim.name=gauss_newton", "sweep.grid.optim.init_lr=[1e-3]", f"output.root={tmp_path}"])


def test_an_unchanged_name_keeps_every_file_key_checked(tmp_path):
    data = {"name": "x", "problem": {"case": "advection"}, "optim": {"name": "gauss_newton", "dampin": 1.0},
            "output": {"root": str(tmp_path)}}
    path = write_config(tmp_path, data)
    for overrides in ([], ["optim.name=gauss_newton"]):
        with pytest.raises(ConfigError) as err:
            plan_runs(path, overrides)
        assert err.value.key == "optim.dampin" and "did you mean 'damping'" in str(err.value)
    # no name in the file: the registry default (adam) is the file's optimiser
    path = write_config(tmp_path, dict(data, optim={"lrr": 1.0}), "noname.yaml")
    with pytest.raises(ConfigError, match="did you mean 'lr'"):
        plan_runs(path, ["optim.name=adam"])
    notes: list[str] = []
    cfg = plan_runs(path, ["optim.name=lbfgs"], notes=notes).configs[0]
    assert notes == [NOTE.format(new="lbfgs", keys="lrr")] and cfg.optim.name == "lbfgs"


@pytest.mark.parametrize("config", ["advection.yaml", "euler.yaml", "euler_sweep.yaml", "elasticity.yaml"])
@pytest.mark.parametrize("new", OPTIMIZERS.names())
def test_every_shipped_config_takes_every_optimiser(tmp_path, config, new):
    path = os.path.join(REPO, "configs", config)
    notes: list[str] = []
    plan = plan_runs(path, [f"optim.name={new}", f"output.root={tmp_path}"], notes=notes)
    assert {c.optim.name for c in plan.configs} == {new}
    old = _file_optim(path).get("name", OPTIMIZERS.default)
    dropped = _dropped(path, new) if new != old else []
    assert notes == ([NOTE.format(new=new, keys=", ".join(dropped))] if dropped else [])


def test_other_tagged_sections_switch_alike(tmp_path):
    notes: list[str] = []
    cfg = plan_runs(EULER, ["network.model=ffn_p", f"output.root={tmp_path}"], notes=notes).configs[0]
    assert cfg.network.model == "ffn_p" and cfg.network.width == 32  # shared key kept from the file
    assert notes == ["network.model=ffn_p: dropped the file's network keys it does not take: omega0"]


def test_advection_with_adam_runs_one_step(tmp_path):
    path = os.path.join(REPO, "configs", "advection.yaml")
    res = cli("run", path, "optim.name=adam", "time.steps=1", "optim.init_max_iters=20", "optim.max_iters=5",
              "sampling.interior=200", f"output.root={tmp_path}", "device=cpu", "output.resolution=64",
              "output.figure_every=0")
    assert res.returncode == 0, res.stderr
    assert "insr-hpc: note" not in res.stderr  # advection.yaml's optim keys are Adam's too
    with open(tmp_path / "advection" / "r000" / "spec.json", encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    assert spec["config"]["optim"]["name"] == "adam" and spec["config"]["optim"]["max_iters"] == 5
    assert "done" in res.stdout

"""Config loading, validation errors and sweep expansion."""

from __future__ import annotations

import os

import pytest
from _small import SMALL_ADVECTION, cli, write_config

from insr_hpc.catalog import load_config
from insr_hpc.config import apply_point, load_raw, sweep_points
from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.plan import plan_runs

SMALL_RECON = {
    "name": "rec", "workload": "recon", "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "network": {"model": "siren"}, "train": {"epochs": 1},
}


def test_defaults_and_overrides_are_typed(tmp_path):
    path = write_config(tmp_path, SMALL_ADVECTION)
    cfg = load_config(path, ["time.dt=0.1", "network.width=32", "problem.initial=wavepacket"])
    assert cfg.time.dt == pytest.approx(0.1)
    assert cfg.network.width == 32 and isinstance(cfg.network.width, int)
    assert cfg.problem.initial == "wavepacket"
    assert cfg.problem.length == 4.0  # case default filled in
    assert cfg.optim.max_iters == 100


def test_shipped_advection_config_is_the_paper_setting():
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "advection.yaml"))
    p = cfg.problem
    assert (p.length, p.speed, p.mu, p.sigma) == (4.0, 0.25, -1.5, 0.1)
    # the authors' network: 3 sine layers × 20 (their --num_hidden_layers 2), 901 parameters
    assert (cfg.network.depth, cfg.network.width) == (3, 20)
    from insr_hpc.fields import build_model

    assert sum(q.numel() for q in build_model(cfg.network, 1, 1).parameters()) == 901
    assert (cfg.time.dt, cfg.time.steps, cfg.integrator.name) == (0.05, 240, "midpoint")
    assert cfg.optim.name == "gauss_newton"


@pytest.mark.parametrize(
    "override, key, fragment",
    [
        (["network.widht=3"], "network.widht", "did you mean 'width'"),
        (["optim.lrr=1"], "optim.lrr", "did you mean 'lr'"),
        (["tiem.dt=1"], "tiem", "did you mean 'time'"),
        (["time.steps=abc"], "time.steps", "expected int"),
        (["time.dt=0"], "time.dt", "must be > 0"),
        (["time.dt=-0.1"], "time.dt", "must be > 0"),
        (["sampling.interior=0"], "sampling.interior", "must be >= 1"),
        (["network.width=0"], "network.width", "must be >= 1"),
        (["integrator.name=rk4"], "integrator.name", "known: explicit_euler, implicit_euler, midpoint"),
        (["problem.case=advectoin"], "problem.case", "did you mean 'advection'"),
        (["problem.initial=square"], "problem.initial", "unknown initial condition"),
    ],
)
def test_bad_values_name_the_key(tmp_path, override, key, fragment):
    path = write_config(tmp_path, SMALL_ADVECTION)
    with pytest.raises(ConfigError) as info:
        load_config(path, override)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_sweep_grid_times_zip(tmp_path):
    data = dict(SMALL_ADVECTION)
    data["sweep"] = {
        "grid": {"time": {"dt": [0.05, 0.1]}, "network.width": [16, 32, 64]},
        "zip": {"problem.initial": ["gaussian", "wavepacket"], "problem.mu": [-1.5, -1.0]},
    }
    raw = load_raw(write_config(tmp_path, data))
    points = sweep_points(raw)
    assert len(points) == 2 * 3 * 2
    seen = {(p.overrides["time.dt"], p.overrides["network.width"], p.overrides["problem.initial"]) for p in points}
    assert len(seen) == 12
    for p in points:  # zip rows travel together
        assert {"gaussian": -1.5, "wavepacket": -1.0}[p.overrides["problem.initial"]] == p.overrides["problem.mu"]
    one = apply_point(raw, points[5])
    assert "sweep" not in one and one["time"]["dt"] == points[5].overrides["time.dt"]
    assert len({p.run_id for p in points}) == 12  # ids are unique


def test_sweep_errors(tmp_path):
    data = dict(SMALL_ADVECTION, sweep={"zip": {"time.dt": [0.1, 0.2], "network.width": [8]}})
    with pytest.raises(ConfigError, match="one length"):
        sweep_points(load_raw(write_config(tmp_path, data)))
    data = dict(SMALL_ADVECTION, sweep={"grid": {"time.dt": 0.1}})
    with pytest.raises(ConfigError, match="expected a list"):
        sweep_points(load_raw(write_config(tmp_path, data)))
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "o")}, sweep={"grid": {"time.dt": [0.1, -1.0]}})
    with pytest.raises(ConfigError, match=r"time.dt: must be > 0.*sweep point r001"):
        plan_runs(write_config(tmp_path, data))
    assert not (tmp_path / "o").exists()


def test_unwritable_output_root(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    data = dict(SMALL_ADVECTION, output={"root": str(blocker / "sub")})
    with pytest.raises(InsrError, match="output.root: cannot create"):
        plan_runs(write_config(tmp_path, data))


BAD_INPUTS = [
    ("missing file", ["run", "nope.yaml"], "config file 'nope.yaml' not found"),
    ("yaml syntax", ["run", "BAD"], "YAML syntax error at line 3"),
    ("unknown key", ["run", "CFG", "optim.lrr=1"], "optim.lrr: unknown key"),
    # switching optim.name drops the file's Adam keys, never one given on the command line
    ("unknown key after a switch", ["submit", "CFG", "optim.name=gauss_newton", "optim.window=3", "--dry-run"],
     "optim.window: unknown key"),
    ("wrong type", ["run", "CFG", "time.steps=many"], "time.steps: expected int"),
    ("impossible dt", ["submit", "CFG", "time.dt=0"], "time.dt: must be > 0"),
    ("zero samples", ["submit", "CFG", "sampling.interior=0"], "sampling.interior: must be >= 1"),
    ("zero width", ["run", "CFG", "network.width=0"], "network.width: must be >= 1"),
    ("unknown backend", ["submit", "CFG", "--backend", "kubernetes"], "launch.backend: unknown backend 'kubernetes'"),
    ("unknown integrator", ["run", "CFG", "integrator.name=leapfrog"], "integrator.name: unknown integrator"),
    ("unwritable root", ["run", "CFG", "output.root=BLOCK/x"], "output.root: cannot create"),
    ("bad override", ["run", "CFG", "time.dt"], "expected key=value"),
    # issue 12: validation before anything exists
    ("empty file", ["submit", "EMPTY", "--dry-run"], "config file 'EMPTY' is empty"),
    ("nan in the file", ["run", "NAN"], "problem.speed: must be a finite number, got nan"),
    ("inf in the file", ["submit", "INF", "--dry-run"], "problem.sigma: must be a finite number, got inf"),
    ("nan in an override", ["run", "CFG", "problem.speed=nan"], "problem.speed: must be a finite number, got nan"),
    ("-inf in an override", ["submit", "CFG", "time.dt=-inf"], "time.dt: must be a finite number, got -inf"),
    ("nan in a sweep", ["submit", "CFG", "sweep.grid.optim.lr=[0.1,nan]", "--dry-run"],
     "optim.lr: must be a finite number, got nan (sweep point r001-lr=nan)"),
    ("unknown name in a map", ["submit", "RECON", "train.lr_by_model.sirne=1e-3", "--dry-run"],
     "train.lr_by_model.sirne: unknown model 'sirne' (known: "),
    ("missing data variable", ["submit", "RECON", "--dry-run", "data.variable=air_temperatur"],
     "data.variable: 'air_temperatur': not in 'sample:A1B_north_america.nc' (variables: air_temperature,"),
    ("name dot", ["run", "CFG", "name=."], "name: '.' is not a directory of its own"),
    ("name dotdot", ["submit", "CFG", "name=.."], "name: '..' is not a directory of its own"),
    ("name with separator", ["run", "CFG", "name=a/b"], "name: must be one directory name, without '/'"),
    ("name too long", ["submit", "CFG", "name=" + "n" * 300], "name: 300 bytes long; the file system under"),
    ("override after a flag", ["submit", "CFG", "--dry-run", "time.dt=0"], "time.dt: must be > 0"),
    ("override after --index", ["run", "CFG", "--index", "0", "network.width=0"], "network.width: must be >= 1"),
]


@pytest.mark.parametrize("label, args, fragment", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, label, args, fragment):
    before_parent = sorted(os.listdir(tmp_path.parent))
    out = tmp_path / "out"
    cfg = write_config(tmp_path, dict(SMALL_ADVECTION, output={"root": str(out)}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntime: {dt: 0.1\n  steps: 3\n")
    block = tmp_path / "block"
    block.write_text("")
    files = {
        "CFG": cfg, "BAD": str(bad), "BLOCK": str(block),
        "EMPTY": _text(tmp_path / "empty.yaml", "# nothing but a comment\n"),
        "NAN": write_config(tmp_path, dict(SMALL_ADVECTION, output={"root": str(out)},
                                           problem={"case": "advection", "speed": float("nan")}), "nan.yaml"),
        "INF": _text(tmp_path / "inf.yaml", (open(cfg).read() + "\n").replace("problem:\n", "problem:\n  sigma: .inf\n")),
        "RECON": write_config(tmp_path, dict(SMALL_RECON, output={"root": str(out)}), "recon.yaml"),
    }
    args = [_fill(a, files) for a in args]
    fragment = _fill(fragment, files)
    before = sorted(os.listdir(tmp_path))
    res = cli(*args, cwd=str(tmp_path))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("insr-hpc: error: "), res.stderr
    assert fragment in lines[0]
    assert sorted(os.listdir(tmp_path)) == before and not out.exists()
    assert sorted(os.listdir(tmp_path.parent)) == before_parent  # name=.. would land here


def _text(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _fill(arg: str, files: dict[str, str]) -> str:
    for key, path in files.items():
        arg = arg.replace(key, path)
    return arg

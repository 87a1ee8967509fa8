"""Incremental sweep expansion (insr_hpc.config.expand) equals a full build per point."""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import pytest
from _small import REPO, SMALL_ADVECTION, write_config
from omegaconf import OmegaConf

from insr_hpc.catalog import CATALOG, build_config, load_config
from insr_hpc.cli import parse_args
from insr_hpc.config import apply_point, config_to_dict, load_raw, sweep_points
from insr_hpc.config import expand as expand_mod
from insr_hpc.errors import ConfigError
from insr_hpc.plan import plan_runs

MIXED = {
    # a grid over leaves of three sections, a tagged-section change (integrator.name) and a
    # zip over two problem keys: 2 × 2 × 2 × 2 = 16 points of two shapes (one per integrator)
    "grid": {"time.dt": [0.05, 0.1], "integrator.name": ["midpoint", "implicit_euler"], "network.width": [16, 32]},
    "zip": {"problem.initial": ["gaussian", "wavepacket"], "problem.mu": [-1.5, -1.0]},
}


def _mixed(tmp_path, **sweep) -> str:
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out")}, sweep=sweep or MIXED)
    return write_config(tmp_path, data)


def _spec_data(plan) -> list[str]:
    # json text: equal values of different types (1 vs 1.0, True vs 1) differ here
    return [json.dumps(dataclasses.asdict(s), sort_keys=False) for s in plan.specs]


def test_incremental_expansion_equals_full_build_per_point(tmp_path, monkeypatch):
    path = _mixed(tmp_path)
    full = plan_runs(path, incremental=False)
    builds = []
    real = expand_mod.build_config
    monkeypatch.setattr(expand_mod, "build_config", lambda data, cat: builds.append(1) or real(data, cat))
    fast = plan_runs(path)
    assert len(fast.specs) == 16
    assert len(builds) == 2  # one full build per integrator: the other 14 points were patched
    assert _spec_data(fast) == _spec_data(full)
    assert [s.run_id for s in fast.specs] == [s.run_id for s in full.specs]
    assert fast.configs == full.configs  # the typed configs too (dataclass equality)
    assert {c.integrator.name for c in fast.configs} == {"midpoint", "implicit_euler"}
    # every point's values really are in its config
    for spec, cfg in zip(fast.specs, fast.configs, strict=True):
        assert (cfg.time.dt, cfg.network.width, cfg.problem.initial, cfg.problem.mu, cfg.integrator.name) == tuple(
            spec.overrides[k] for k in ("time.dt", "network.width", "problem.initial", "problem.mu", "integrator.name"))
        assert isinstance(cfg.time.dt, float) and isinstance(cfg.network.width, int)


def test_incremental_converts_values_as_omegaconf_does(tmp_path):
    # an int for a float field, a string for a float field, a whole block as a swept value
    path = _mixed(tmp_path, grid={"time.dt": [1, "0.5"], "optim.lr": ["1e-3", 0.01], "problem.mu": [0.0, -0.0]},
                  zip={"network": [{"model": "siren", "width": 8}, {"model": "siren", "depth": 1}]})
    fast, full = plan_runs(path), plan_runs(path, incremental=False)
    assert _spec_data(fast) == _spec_data(full)
    assert [c.time.dt for c in fast.configs][:2] == [1.0, 1.0] and type(fast.configs[0].time.dt) is float
    assert {json.dumps(c.problem.mu) for c in fast.configs} == {"0.0", "-0.0"}


BAD_POINTS = [
    # (sweep, key, its bad value, fragment of the message)
    ({"grid": {"time.dt": [0.05, 0.1, -1.0], "network.width": [16, 32]}}, "time.dt", -1.0, "must be > 0, got -1.0"),
    ({"grid": {"network.width": [16, "wide"], "time.dt": [0.05, 0.1]}}, "network.width", "wide", "expected int"),
    ({"grid": {"time.dt": [0.05, 0.1]}, "zip": {"problem.speed": [1.0, float("nan")]}}, "problem.speed",
     float("nan"), "must be a finite number, got nan"),
    ({"grid": {"integrator.name": ["midpoint", "leapfrog"]}}, "integrator.name", "leapfrog", "unknown integrator 'leapfrog'"),
]


@pytest.mark.parametrize("sweep, key, bad, fragment", BAD_POINTS, ids=[b[1] for b in BAD_POINTS])
def test_bad_value_in_point_k_is_reported_naming_point_k(tmp_path, sweep, key, bad, fragment):
    path = _mixed(tmp_path, **sweep)
    points = sweep_points(load_raw(path))
    k = next(i for i, p in enumerate(points) if repr(p.overrides[key]) == repr(bad))
    assert k > 0  # earlier points are good: the error is not the first point's
    run_id = points[k].run_id
    errors = []
    for incremental in (True, False):
        with pytest.raises(ConfigError) as info:
            plan_runs(path, incremental=incremental)
        errors.append(str(info.value))
        assert info.value.key == key
    assert errors[0] == errors[1]  # word for word what a full build per point says
    assert fragment in errors[0] and errors[0].endswith(f"(sweep point {run_id})"), errors[0]
    assert not (tmp_path / "out").exists()


def test_apply_point_matches_omegaconf_dotlist(tmp_path):
    raw = load_raw(_mixed(tmp_path, grid={"time.dt": [0.05, 1e-5], "network": [{"model": "siren", "width": 8}]},
                          zip={"problem.initial": ["gaussian", "wavepacket"], "output.figure_every": [0, 3]}))
    for point in sweep_points(raw):
        dotted = OmegaConf.to_container(OmegaConf.from_dotlist([f"{k}={json.dumps(v)}" for k, v in point.overrides.items()]))
        from insr_hpc.config.load import merge_dicts

        assert apply_point(raw, point) == merge_dicts({k: v for k, v in raw.items() if k != "sweep"}, dotted)


def test_config_to_dict_matches_omegaconf_for_every_shipped_config():
    for path in sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml"))):
        raw = load_raw(path)
        for point in sweep_points(raw)[:4]:
            cfg = build_config(apply_point(raw, point))
            ours, theirs = config_to_dict(cfg), OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
            assert json.dumps(ours) == json.dumps(theirs), path


def test_config_to_dict_shares_unchanged_sections_only(tmp_path):
    plan = plan_runs(_mixed(tmp_path))
    a, b = plan.specs[0].config, plan.specs[1].config  # differ in problem (zip row) only
    assert a["launch"] is b["launch"] and a["problem"] is not b["problem"]
    assert a["problem"]["initial"] != b["problem"]["initial"]


def test_kriging_may_use_an_infinite_smoothness():
    cfg = build_config({"workload": "recon", "device": "cpu", "network": {"model": "kriging", "nu": float("inf")}})
    assert cfg.network.nu == float("inf")
    with pytest.raises(ConfigError, match="network.nu: must be a finite number, got nan"):
        build_config({"workload": "recon", "device": "cpu", "network": {"model": "kriging", "nu": float("nan")}})


@pytest.mark.parametrize("argv, overrides", [
    (["submit", "C", "a=1", "--dry-run", "b=2", "--backend", "local", "c=3"], ["a=1", "b=2", "c=3"]),
    (["submit", "C", "--dry-run", "a=1"], ["a=1"]),
    (["run", "C", "--index", "2", "a=1", "b=2"], ["a=1", "b=2"]),
    (["run", "--index", "2", "C", "a=1"], ["a=1"]),
])
def test_overrides_anywhere_on_the_command_line(argv, overrides):
    args = parse_args(argv)
    assert args.config == "C" and args.overrides == overrides


def test_interpolations_take_the_full_build(tmp_path):
    data = dict(SMALL_ADVECTION, output={"root": str(tmp_path / "out"), "figure_every": "${time.steps}"},
                sweep={"grid": {"time.steps": [2, 3, 4]}})
    plan = plan_runs(write_config(tmp_path, data))
    assert [c.output.figure_every for c in plan.configs] == [2, 3, 4]


def test_loaded_config_is_unchanged_by_expansion_machinery():
    cfg = load_config(os.path.join(REPO, "configs", "advection.yaml"))
    assert expand_mod.expand_configs(load_raw(os.path.join(REPO, "configs", "advection.yaml")),
                                     [sweep_points({})[0]], CATALOG) == [cfg]

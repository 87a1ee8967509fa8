"""The synthetic field (insr_hpc/recon/synthetic.py): ``data.path=synthetic:NAME`` loads
through the ordinary loader, its values are the documented formula, a file written by
the documented command holds the same field, and a bad spec is one error line."""

import math

import numpy as np
import pytest

from insr_hpc.cli import main
from insr_hpc.errors import InsrError
from insr_hpc.recon.data import load_field
from insr_hpc.recon.synthetic import bumps_front_params
from insr_hpc.recon.synthetic import main as synthetic_main


def formula(p, t, lat, lon):
    """The module docstring's formula at one point, written out independently."""
    v = p["base"] + p["gradient"] * (lat - 40.0)
    for k in range(len(p["amp"])):
        angle = p["omega"][k] * t + p["phase"][k]
        clat = p["lat_c"][k] + p["radius"][k] * math.sin(angle)
        clon = p["lon_c"][k] + p["radius"][k] * math.cos(angle)
        v += p["amp"][k] * math.exp(-((lat - clat) ** 2 + (lon - clon) ** 2) / (2 * p["sigma"][k] ** 2))
    front = p["front_lat"] + p["front_swing"] * math.sin(2 * math.pi * t / p["front_period"])
    v += 0.5 * p["front_amp"] * math.tanh((lat - front - p["front_slope"] * (lon + 95.0)) / p["front_width"])
    return v


def test_synthetic_field_loads_with_cf_metadata_and_matches_the_formula():
    fld = load_field("synthetic:bumps_front", "temperature")
    p = bumps_front_params(0)
    assert fld.values.shape == (120, 32, 48) and fld.valid.all() and fld.units == "K"
    assert fld.time_attrs["units"].startswith("days since") and fld.lat_attrs["units"] == "degrees_north"
    np.testing.assert_allclose(fld.lat, np.linspace(20, 60, 32))
    np.testing.assert_allclose(fld.lon, np.linspace(-130, -60, 48))
    rng = np.random.default_rng(1)
    for t, i, j in zip(rng.integers(0, 120, 50), rng.integers(0, 32, 50), rng.integers(0, 48, 50)):
        assert fld.values[t, i, j] == pytest.approx(formula(p, float(fld.time[t]), fld.lat[i], fld.lon[j]), abs=1e-9)
    # the structure is there: the front is a jump of ~|F| across a grid spacing somewhere
    assert np.abs(np.diff(fld.values, axis=1)).max() > 0.6 * abs(p["front_amp"])
    # deterministic by seed, and another seed is another field
    np.testing.assert_array_equal(fld.values, load_field("synthetic:bumps_front:0", "temperature").values)
    assert not np.allclose(fld.values, load_field("synthetic:bumps_front:7", "temperature").values)


def test_the_documented_command_writes_the_same_field(tmp_path, capsys):
    out = tmp_path / "bf.nc"
    assert synthetic_main([str(out), "--seed", "3"]) == 0
    np.testing.assert_array_equal(load_field(str(out), "temperature").values,
                                  load_field("synthetic:bumps_front:3", "temperature").values)


@pytest.mark.parametrize("spec, words", [("synthetic:bump_front", "did you mean 'bumps_front'"),
                                         ("synthetic:bumps_front:-1", "non-negative integer")])
def test_a_bad_synthetic_spec_is_one_line_at_plan_time(tmp_path, capsys, spec, words):
    code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp_path / 'runs'}", f"data.path={spec}",
                 "data.variable=temperature"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and words in err and err.startswith("insr-hpc: error: data.path")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(InsrError):
        load_field(spec, "temperature")

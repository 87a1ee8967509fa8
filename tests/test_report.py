"""``insr-hpc report`` and ``insr-hpc render`` on real tiny stores: a PDE sweep (finished,
partial and failed runs) and reconstructions (finished, failed before its store)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
import zarr
import yaml
from conftest import BIN, CONFIG, REPO, tiny

from insr_hpc.cli import main
from insr_hpc.store import decode_attrs

RECON = {
    "workload": "recon", "name": "rec", "seed": 3407, "device": "cpu",
    "data": {"path": "sample:A1B_north_america.nc", "variable": "air_temperature"},
    "task": {"name": "task1", "ratio": 0.05},
    "train": {"epochs": 2, "batch_steps": 120, "eval_every": 1, "checkpoint_every": 2},
    "network": {"model": "mmgn", "width": 16, "layers": 2, "latent": 4, "input_scale": 64.0},
    "output": {"figure_every": 0},
}


def _state(run_dir: str, **changes) -> None:
    path = os.path.join(run_dir, "run.json")
    with open(path, encoding="utf-8") as fh:
        state = json.load(fh)
    state.update(changes)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(state, fh)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> str:
    """A sweep directory: 4 advection runs (dt × width; r002 partial, r003 failed after
    one step) and 2 reconstructions (one finished, one failed before its store)."""
    root = str(tmp_path_factory.mktemp("sweep"))
    with open(CONFIG, encoding="utf-8") as fh:
        cfg = yaml.safe_load(fh)
    cfg["sweep"] = {"grid": {"time.dt": [0.05, 0.1], "network.width": [8, 12]}}
    cfg_path = os.path.join(root, "adv.yaml")
    with open(cfg_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(cfg, fh)
    for k in range(4):
        assert main(["run", cfg_path, *tiny(os.path.join(root, "runs")), "--index", str(k)]) == 0
    runs = os.path.join(root, "runs", "advection")
    partial, failed = sorted(os.listdir(runs))[2:4]
    zarr.open_group(os.path.join(runs, partial, "store.zarr"), mode="r+")["committed"][2] = 0
    _state(os.path.join(runs, partial), state="running")
    g = zarr.open_group(os.path.join(runs, failed, "store.zarr"), mode="r+")
    g["committed"][1:] = 0
    _state(os.path.join(runs, failed), state="failed", reason="RuntimeError: diverged")
    rec_cfg = os.path.join(root, "rec.yaml")
    with open(rec_cfg, "w", encoding="utf-8") as fh:
        yaml.safe_dump({**RECON, "sweep": {"grid": {"task.ratio": [0.05, 0.25]}}}, fh)
    rec_root = os.path.join(root, "runs")
    assert main(["run", rec_cfg, f"output.root={rec_root}", "--index", "0"]) == 0
    # the second point failed before creating its store: spec.json and run.json only
    from insr_hpc.plan import plan_runs
    from insr_hpc.run import update_state

    spec = plan_runs(rec_cfg, [f"output.root={rec_root}"]).specs[1]
    spec.save()
    update_state(spec.run_dir, run_id=spec.run_id, state="failed", reason="OSError: data file vanished")
    return os.path.join(root, "runs")


@pytest.fixture(scope="module")
def report(sweep):
    assert main(["report", sweep]) == 0
    return os.path.join(sweep, "report")


def test_sweep_dataset_stacks_runs_and_selects_by_swept_keys(sweep, report):
    # small: loaded whole (with dask installed open_zarr gives dask arrays, and grouping
    # or dropping by a dask-backed coordinate needs it computed first)
    ds = xr.open_zarr(os.path.join(report, "sweep.zarr")).load()
    assert ds.sizes["run"] == 6 and ds.sizes["step"] == 3 and ds.sizes["epoch"] == 2
    adv = ds.sel(run=[r for r in ds.run.values if r.startswith("advection/")])
    # swept keys as coordinates: dots → "__" (issue 21: "time.dt" read as time's .dt accessor)
    assert adv["time__dt"].attrs["swept_key"] == "time.dt" and "time.dt" not in ds.variables
    wide = adv.where(adv["network__width"] == 12, drop=True)
    assert sorted(wide.run.values) == sorted(r for r in adv.run.values if "width=12" in r)
    by_dt = adv.rel_l2.sel(step=0).groupby("time__dt").mean()
    for dt in (0.05, 0.1):
        members = [r for r in adv.run.values if r.endswith(f"dt={dt}") or f"dt={dt}_" in r]
        assert len(members) == 2
        expect = np.mean([float(xr.open_zarr(os.path.join(sweep, r, "store.zarr")).rel_l2[0]) for r in members])
        assert float(by_dt.sel(time__dt=dt)) == pytest.approx(expect, rel=1e-12)
    for run in adv.run.values:  # every committed value is the store's; later steps NaN
        store = xr.open_zarr(os.path.join(sweep, run, "store.zarr"))
        n = int(ds.steps_done.sel(run=run))
        np.testing.assert_array_equal(ds.rel_l2.sel(run=run).values[:n], store.rel_l2.values[:n])
        assert np.isnan(ds.rel_l2.sel(run=run).values[n:]).all()
        np.testing.assert_allclose(ds.time.sel(run=run).values[:n], store.time.values[:n])
        np.testing.assert_array_equal(ds.capped.sel(run=run).values[:n], (store.capped.values[:n] == 1).sum(axis=1))
        assert int(ds.capped_substeps.sel(run=run)) == int((store.capped.values[:n] == 1).sum()) == n
    states = dict(zip(ds.run.values, ds.state.values, strict=True))
    assert sorted(states.values()) == ["done", "done", "done", "failed", "failed", "running"]
    assert [int(ds.steps_done.sel(run=r)) for r in sorted(adv.run.values)] == [3, 3, 2, 1]
    rec = [r for r in ds.run.values if r.startswith("rec/")]
    done = [r for r in rec if states[r] == "done"][0]
    store = xr.open_zarr(os.path.join(sweep, done, "store.zarr"))
    np.testing.assert_array_equal(ds.mse.sel(run=done).values, store.mse.values)
    failed = [r for r in rec if states[r] == "failed"][0]
    assert np.isnan(ds.mse.sel(run=failed).values).all()
    assert "vanished" in str(ds.reason.sel(run=failed).values)
    assert float(ds["task__ratio"].sel(run=failed)) == 0.25


def test_summary_rows_are_sorted_by_error_and_match_the_stores(sweep, report):
    with open(os.path.join(report, "summary.csv"), encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    adv = [r for r in rows if r["run"].startswith("advection/")]
    errors = [float(r["final_rel_l2"]) for r in adv]
    assert errors == sorted(errors)
    for row in adv:
        store = xr.open_zarr(os.path.join(sweep, row["run"], "store.zarr"))
        n = int(row["steps_done"])
        assert float(row["final_rel_l2"]) == float(store.rel_l2.values[n - 1])
        assert float(row["worst_rel_l2"]) == float(store.rel_l2.values[:n].max())
        # issue 21: the column says it is a total over steps and sub-problems
        assert int(row["iterations_total"]) == int(store.iterations.values[:n].clip(min=0).sum())
        # tiny(): rtol 0 and a tol no loss reaches, so every sub-problem stopped at its cap
        assert int(row["capped_substeps"]) == int((store.capped.values[:n] == 1).sum()) == n
        assert float(row["seconds_total"]) == pytest.approx(float(store.seconds.values[:n].sum()), rel=1e-12)
        assert float(row["fit_seconds"]) == float(store.seconds.values[0])  # step 0: the initial fit
        if n > 1:  # the time steps after it
            assert float(row["seconds_per_step"]) == pytest.approx(float(store.seconds.values[1:n].mean()), rel=1e-12)
        else:
            assert row["seconds_per_step"] == ""
        assert int(row["n_params"]) == store.weights.shape[1]
        assert row["network.width"] in ("8", "12")
    failed = [r for r in rows if r["state"] == "failed" and r["run"].startswith("advection/")][0]
    assert failed["reason"] == "RuntimeError: diverged" and failed["steps_done"] == "1"
    rec = [r for r in rows if r["run"].startswith("rec/") and r["state"] == "done"][0]
    assert rec["capped_substeps"] == ""  # not a PDE run: no sub-problems
    store = xr.open_zarr(os.path.join(sweep, rec["run"], "store.zarr"))
    assert float(rec["final_mse"]) == float(store.mse.values[-1])
    assert float(rec["final_rmse"]) == float(store.rmse.values[-1])
    md = open(os.path.join(report, "summary.md"), encoding="utf-8").read()
    assert md.count("\n| advection/") == 4 and "final_rel_l2" in md


def test_figures_are_pngs_with_the_expected_axes(sweep, report):
    from insr_hpc.analysis import figures
    from insr_hpc.analysis.report import collect, run_dirs

    names = sorted(f for f in os.listdir(report) if f.endswith(".png"))
    assert names == ["error_history.png", "final_error_heatmap_pde.png", "snapshots_advection.png",
                     "snapshots_recon_air_temperature.png"]
    for name in names:
        with open(os.path.join(report, name), "rb") as fh:
            data = fh.read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, name
    records, bad = collect(run_dirs(sweep), sweep)
    assert not bad
    ds = xr.open_zarr(os.path.join(report, "sweep.zarr"))
    adv = [r for r in records if r.workload == "pde"]
    rec = [r for r in records if r.workload == "recon"]
    assert len(figures.error_history(ds, records).axes) == 2  # PDE and reconstruction
    assert len(figures.final_error_heatmap(adv).axes) == 2  # map + colour bar
    assert figures.final_error_heatmap(rec) is None  # one swept key: no heatmap
    assert len(figures.snapshot("advection", "pde", adv, sweep).axes) == 6  # best, worst: prediction, reference, error
    assert len(figures.snapshot("air_temperature", "recon", rec, sweep).axes) == 6  # 3 maps + 3 colour bars


def test_vorticity_of_taylor_green_matches_the_analytic_curl():
    from insr_hpc.analysis.figures import vorticity

    x = np.linspace(0, 2 * np.pi, 257)
    X, Y = np.meshgrid(x, x)
    u = np.stack([np.sin(X) * np.cos(Y), -np.cos(X) * np.sin(Y)], -1)
    np.testing.assert_allclose(vorticity(u, x, x)[2:-2, 2:-2], (2 * np.sin(X) * np.sin(Y))[2:-2, 2:-2], atol=1e-3)


def test_report_under_two_mpi_ranks_equals_the_serial_one(sweep, report, tmp_path):
    mpiexec = os.path.join(BIN, "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec not found next to python (pip install mpich)")
    serial = str(tmp_path / "serial")
    shutil.copytree(report, serial)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "insr_hpc", "report", sweep],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "on 2 MPI ranks" in out.stdout
    for name in ("summary.csv", "summary.md"):
        assert open(os.path.join(report, name), "rb").read() == open(os.path.join(serial, name), "rb").read()
    a, b = xr.open_zarr(os.path.join(report, "sweep.zarr")), xr.open_zarr(os.path.join(serial, "sweep.zarr"))
    xr.testing.assert_identical(a.load(), b.load())


def test_bad_stores_are_named_and_the_rest_is_reported(sweep, tmp_path):
    root = str(tmp_path / "bad")
    good = sorted(os.listdir(os.path.join(sweep, "advection")))[:4]
    for name in good:
        shutil.copytree(os.path.join(sweep, "advection", name), os.path.join(root, name))
    missing, corrupt, future = (os.path.join(root, n, "store.zarr") for n in good[:3])
    g = zarr.open_group(missing, mode="r+")
    del g["rel_l2"]
    zarr.consolidate_metadata(missing)
    zarr.open_group(corrupt, mode="r+").attrs["config"] = "not a mapping"
    zarr.consolidate_metadata(corrupt)
    zarr.open_group(future, mode="r+").attrs["store_version"] = 99
    zarr.consolidate_metadata(future)
    res = subprocess.run([sys.executable, "-m", "insr_hpc", "report", root], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 3, res.stderr
    assert f"{missing}: missing array 'rel_l2'" in lines[0]
    assert f"{corrupt}: attribute 'config' is str" in lines[1]
    assert f"{future}: store_version 99 unknown" in lines[2]
    with open(os.path.join(root, "report", "summary.csv"), encoding="utf-8") as fh:
        assert [r["run"] for r in csv.DictReader(fh)] == [good[3]]


def test_report_without_runs_is_an_input_error_and_writes_nothing(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("insr-hpc: error: report: no runs under")
    assert os.listdir(tmp_path) == []


# -- render ---------------------------------------------------------------------------------
def _finished_adv(sweep: str) -> str:
    return os.path.join(sweep, "advection", sorted(os.listdir(os.path.join(sweep, "advection")))[0], "store.zarr")


def test_render_at_the_stored_resolution_is_the_stored_field(sweep, tmp_path):
    store = _finished_adv(sweep)
    out = str(tmp_path / "same.zarr")
    assert main(["render", store, "--step", "2", "--resolution", "32", "--out", out]) == 0
    r, s = xr.open_zarr(out), xr.open_zarr(store)
    np.testing.assert_allclose(r.x.values, s.x.values, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.u.values, s.field.values[2], rtol=0, atol=1e-6)


def test_render_at_an_unstored_resolution_equals_the_network(sweep, tmp_path):
    import torch

    from insr_hpc.fields import build_model, load_flat_params
    from insr_hpc.fields.siren import Siren

    store = _finished_adv(sweep)
    out = str(tmp_path / "fine.zarr")
    assert main(["render", store, "--step", "1", "--resolution", "1001", "--out", out]) == 0
    r, s = xr.open_zarr(out), xr.open_zarr(store)
    net = build_model(Siren.Params(**decode_attrs(s.attrs)["config"]["network"]), 1, 1)
    load_flat_params(net, s.weights.sel(step=1).values)
    x = np.linspace(-2.0, 2.0, 1001)
    with torch.no_grad():
        direct = net(torch.as_tensor(x, dtype=torch.float32)[:, None])[:, 0].numpy()
    np.testing.assert_allclose(r.x.values, x, atol=1e-12)
    np.testing.assert_array_equal(r.u.values, direct)
    assert r.sizes["x"] == 1001 and r.attrs["step"] == 1


def test_render_reconstruction_reproduces_the_stored_map(sweep, tmp_path):
    rec = os.path.join(sweep, "rec")
    store = os.path.join(rec, [d for d in sorted(os.listdir(rec)) if os.path.exists(os.path.join(rec, d, "store.zarr"))][0], "store.zarr")
    s = xr.open_zarr(store)
    out = str(tmp_path / "map.png")
    assert main(["render", store, "--step", "7", "--resolution", "300", "--out", out]) == 0
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    from insr_hpc.analysis.render import recon_on_grid, render
    from insr_hpc.store import StepStore

    # on the stored grid the network gives the stored reconstruction (inputs, codes, units)
    ds = StepStore.dataset(store)
    again = recon_on_grid(ds, 7, s.latitude.values, s.longitude.values).reconstruction.values
    stored = s.reconstruction.values[7]
    ok = np.isfinite(stored)
    assert ok.sum() > 0.5 * stored.size
    np.testing.assert_allclose(again[ok], stored[ok], rtol=0, atol=1e-3)  # K; float32 pipeline
    fine = render(store, 7, 300).reconstruction
    assert fine.shape == (300, 300) and fine.attrs["units"] == "K" and np.isfinite(fine.values).all()
    assert float(fine.latitude[0]) == float(s.latitude.min()) and float(fine.longitude[-1]) == float(s.longitude.max())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--step", "2", "--resolution", "0"], "--resolution must be > 0"),
        (["--step", "2", "--resolution", "100000000"], "the limit is 67108864 points"),
        (["--step", "9", "--resolution", "16"], "--step 9 is outside 0..2"),
    ],
)
def test_render_bad_input_is_one_line_and_writes_nothing(sweep, tmp_path, capsys, args, message):
    out = str(tmp_path / "x.zarr")
    assert main(["render", _finished_adv(sweep), *args, "--out", out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("insr-hpc: error: render: ") and err.count("\n") == 1 and message in err, err
    assert not os.path.exists(out) and not os.path.exists(out + ".partial")


def test_render_refuses_an_uncommitted_step_and_a_non_store(sweep, tmp_path):
    from insr_hpc.analysis.render import render_to
    from insr_hpc.errors import InsrError

    partial = os.path.join(sweep, "advection", sorted(os.listdir(os.path.join(sweep, "advection")))[2], "store.zarr")
    out = str(tmp_path / "x.png")
    with pytest.raises(InsrError, match="step 2 is not committed \\(last committed step: 1\\)"):
        render_to(partial, 2, 16, out)
    with pytest.raises(InsrError, match="is not a run store"):
        render_to(str(tmp_path), 0, 16, out)
    assert not os.path.exists(out)


def test_tensorboard_hparams_hold_each_runs_swept_keys_and_final_metrics(sweep, report):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    with open(os.path.join(report, "summary.csv"), encoding="utf-8") as fh:
        rows = {r["run"]: r for r in csv.DictReader(fh)}
    logdir = os.path.join(report, "tensorboard")
    sessions = sorted(d for d in os.listdir(logdir) if os.path.isdir(os.path.join(logdir, d)))
    assert len(sessions) == 6
    seen = {}
    for name in sessions:
        acc = EventAccumulator(os.path.join(report, "tensorboard", name))
        acc.Reload()
        content = acc.PluginTagToContent("hparams")
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hp = start.session_start_info.hparams
        run = name.replace("_", "/", 1) if name.startswith(("advection_", "rec_")) else name
        row = rows[run]
        seen[run] = hp["state"].string_value
        assert hp["state"].string_value == row["state"]
        if run.startswith("advection/"):
            assert hp["time.dt"].number_value == float(row["time.dt"])
            assert hp["network.width"].number_value == float(row["network.width"])
            final = acc.Scalars("final/rel_l2")[0]
            assert final.value == pytest.approx(float(row["final_rel_l2"]), rel=1e-6)
            assert final.step == int(row["steps_done"])
        elif row["state"] == "done":
            assert hp["task.ratio"].number_value == float(row["task.ratio"])
            assert acc.Scalars("final/mse")[0].value == pytest.approx(float(row["final_mse"]), rel=1e-6)
    assert sorted(seen) == sorted(rows)
    root = EventAccumulator(logdir)
    root.Reload()
    raw = root.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(raw).experiment
    assert {h.name for h in experiment.hparam_infos} == {"time.dt", "network.width", "task.ratio", "state"}
    assert {m.name.tag for m in experiment.metric_infos} >= {"final/rel_l2", "final/mse", "worst/rel_l2", "seconds_per_step"}

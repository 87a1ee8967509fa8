"""The analysis scripts in jobs/ on small stores written through StepStore, with fields
whose answers are known in closed form."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import BIN, REPO

from insr_hpc.store import StepStore, VarSpec

sys.path.insert(0, os.path.join(REPO, "jobs"))
import convergence_order  # noqa: E402
import euler_spectrum  # noqa: E402
import recon_error_maps  # noqa: E402


def _rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _euler_store(path: str, n: int = 64, steps: int = 3, decay: float = 1.0) -> None:
    """Taylor–Green u = e^(−decay·t) (sin πx cos πy, −cos πx sin πy) on [−1, 1]² cell centres."""
    xc = -1 + (np.arange(n) + 0.5) * 2 / n
    X, Y = np.meshgrid(xc, xc)
    base = np.stack([np.sin(np.pi * X) * np.cos(np.pi * Y), -np.cos(np.pi * X) * np.sin(np.pi * Y)], -1)
    t = np.arange(steps) * 0.1
    variables = {
        "step": VarSpec(("step",), (steps,), "int32", {}, np.arange(steps, dtype=np.int32)),
        "time": VarSpec(("step",), (steps,), "float64", {}, t),
        "x": VarSpec(("x",), (n,), "float64", {}, xc),
        "y": VarSpec(("y",), (n,), "float64", {}, xc),
        "u": VarSpec(("step", "y", "x", "component"), (steps, n, n, 2), "float32"),
        "kinetic_energy": VarSpec(("step",), (steps,), "float32"),
    }
    store = StepStore.create(path, variables, {"case": "euler", "workload": "pde", "config": {}})
    for k in range(steps):
        u = (np.exp(-decay * t[k]) * base).astype(np.float32)
        store.commit_step(k, {"u": u, "kinetic_energy": 0.5 * (u.astype(np.float64) ** 2).sum() * (2 / n) ** 2})


def test_euler_spectrum_sums_to_the_kinetic_energy_and_enstrophy_is_analytic(tmp_path):
    _euler_store(str(tmp_path / "a" / "store.zarr"))
    assert euler_spectrum.main([str(tmp_path)]) == 0
    spec = _rows(str(tmp_path / "report" / "euler_spectrum.csv"))
    energy = np.array([float(r["E"]) for r in spec])
    assert {r["step"] for r in spec} == {"2"}
    ke = np.exp(-2 * 0.2)  # ½∫|u|² = 1 at t = 0 on [−1, 1]²
    assert energy.sum() == pytest.approx(ke, rel=1e-3)
    assert energy[1] / energy.sum() > 0.99  # the single mode |k| = √2 · (2π/L) lands in shell 1
    z = _rows(str(tmp_path / "report" / "euler_enstrophy.csv"))
    expect = 2 * np.pi**2 * np.exp(-2 * np.arange(3) * 0.1)  # ω = 2π e^(−t) sin πx sin πy
    np.testing.assert_allclose([float(r["Z"]) for r in z], expect, rtol=1e-2)
    assert os.path.getsize(tmp_path / "report" / "euler_spectrum.png") > 10_000


def test_euler_spectrum_under_two_mpi_ranks_equals_one_process(tmp_path):
    mpiexec = os.path.join(BIN, "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec not found next to python (pip install mpich)")
    for k, decay in enumerate((0.5, 1.0, 2.0)):
        _euler_store(str(tmp_path / f"r{k}" / "store.zarr"), n=16, decay=decay)
    assert euler_spectrum.main([str(tmp_path), "--out", str(tmp_path / "one")]) == 0
    res = subprocess.run([mpiexec, "-n", "2", sys.executable, os.path.join(REPO, "jobs", "euler_spectrum.py"),
                          str(tmp_path), "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "by 2 rank(s)" in res.stdout
    for name in ("euler_spectrum.csv", "euler_enstrophy.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_recon_error_by_latitude(tmp_path):
    t, h, w = 4, 5, 6
    lat, lon = np.linspace(10, 50, h), np.linspace(200, 250, w)
    err = np.broadcast_to((np.arange(h) + 1.0)[None, :, None], (t, h, w)).copy()
    err[:, 0, :3] = np.nan  # land
    observed = np.zeros((t, h, w), bool)
    observed[:, 2, :] = True  # latitude 2 is fully observed: no unobserved points there
    err[:, 4, ::2] *= -1  # sign does not matter
    variables = {
        "time": VarSpec(("time",), (t,), "float64", {}, np.arange(t, dtype=float), (t,)),
        "latitude": VarSpec(("latitude",), (h,), "float64", {}, lat),
        "longitude": VarSpec(("longitude",), (w,), "float64", {}, lon),
        "epoch": VarSpec(("epoch",), (1,), "int32", {}, np.array([1], dtype=np.int32)),
        "committed": VarSpec(("epoch",), (1,), "uint8"),
        "error": VarSpec(("time", "latitude", "longitude"), (t, h, w), "float32", {"units": "K"}, err.astype(np.float32)),
        "observed": VarSpec(("time", "latitude", "longitude"), (t, h, w), "uint8", {}, observed.astype(np.uint8)),
    }
    path = str(tmp_path / "r0" / "store.zarr")
    store = StepStore.create(path, variables, {"store_kind": "recon", "workload": "recon"}, record_dims=("epoch", "time"))
    store.finish({"complete": True})
    assert recon_error_maps.main([str(tmp_path)]) == 0
    rows = _rows(str(tmp_path / "report" / "recon_latitude_error.csv"))
    np.testing.assert_allclose([float(r["rmse"]) for r in rows], np.arange(h) + 1.0)
    assert [int(r["points"]) for r in rows] == [t * 3, t * w, t * w, t * w, t * w]
    assert rows[2]["rmse_unobserved"] == "nan" and float(rows[1]["rmse_unobserved"]) == 2.0
    assert os.path.getsize(tmp_path / "report" / "recon_error_maps.png") > 10_000


def test_convergence_order_recovers_a_second_order_error(tmp_path, capsys):
    for width in (8, 16):
        for dt in (0.4, 0.2, 0.1, 0.05):
            variables = {"rel_l2": VarSpec(("step",), (3,), "float64")}
            path = str(tmp_path / f"w{width}_dt{dt}" / "store.zarr")
            cfg = {"time": {"dt": dt}, "network": {"width": width}}
            store = StepStore.create(path, variables, {"config": cfg})
            c = 3.0 if width == 8 else 0.5
            for k in range(3):
                store.commit_step(k, {"rel_l2": c * dt ** (2 if width == 8 else 1) * (k + 1) / 3})
    assert convergence_order.main([str(tmp_path), "--key", "time.dt", "--group", "network.width"]) == 0
    rows = {r["group"]: float(r["order"]) for r in _rows(str(tmp_path / "report" / "convergence.csv"))}
    assert rows["network.width=8"] == pytest.approx(2.0, abs=1e-9)
    assert rows["network.width=16"] == pytest.approx(1.0, abs=1e-9)
    assert "observed order p = 2.000" in capsys.readouterr().out


# -- scripts that behave: report/ is not a run, outputs go beside the input, docs only on --write
def _adv_store(path: str, errors=(0.1, 0.2, 0.3), time=(0.0, 0.1, 0.2)) -> None:
    n = len(errors)
    variables = {"time": VarSpec(("step",), (n,), "float64", {}, np.array(time)),
                 "rel_l2": VarSpec(("step",), (n,), "float64")}
    store = StepStore.create(path, variables, {"case": "advection", "workload": "pde", "config": {}})
    for k, e in enumerate(errors):
        store.commit_step(k, {"rel_l2": e})


def _fake_report(root) -> None:
    """What `insr-hpc report` leaves: report/sweep.zarr, a zarr that is not a run store."""
    import xarray as xr

    xr.Dataset({"rel_l2": (("run", "step"), np.ones((1, 3)))}).to_zarr(str(root / "report" / "sweep.zarr"), mode="w")


def test_summarize_stores_skips_the_report_directory(tmp_path):
    import summarize_stores

    _adv_store(str(tmp_path / "r000" / "store.zarr"))
    _fake_report(tmp_path)
    assert summarize_stores.main([str(tmp_path)]) == 0
    rows = _rows(str(tmp_path / "summary.csv"))
    assert [r["run"] for r in rows] == ["r000"]
    assert float(rows[0]["final_error"]) == 0.3


def test_plot_errors_writes_beside_its_input_not_into_the_working_directory(tmp_path, monkeypatch, capsys):
    import plot_errors

    sweep = tmp_path / "sweep"
    _adv_store(str(sweep / "r000" / "store.zarr"))
    _fake_report(sweep)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert plot_errors.main([str(sweep)]) == 0
    assert os.listdir(elsewhere) == []
    assert (sweep / "report" / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert out.count("r000") == 1 and "sweep.zarr" not in out
    assert plot_errors.main([str(sweep), "--out", str(tmp_path / "x" / "e.png")]) == 0
    assert (tmp_path / "x" / "e.png").exists()


def _convergence_stores(root, dts) -> None:
    for dt in dts:
        variables = {"rel_l2": VarSpec(("step",), (1,), "float64")}
        store = StepStore.create(str(root / f"dt{dt}" / "store.zarr"), variables, {"config": {"time": {"dt": dt}}})
        store.commit_step(0, {"rel_l2": 3.0 * dt**2})


@pytest.mark.parametrize(("dts", "kind"), [((0.2, 0.1), "two-point"), ((0.1,), "none")])
def test_convergence_order_does_not_fit_fewer_than_three_values(tmp_path, capsys, dts, kind):
    import matplotlib.pyplot as plt

    _convergence_stores(tmp_path, dts)
    assert convergence_order.main([str(tmp_path), "--key", "time.dt"]) == 0
    out = capsys.readouterr().out
    (row,) = _rows(str(tmp_path / "report" / "convergence.csv"))
    assert row["order"] == "" and "observed order p" not in out
    ax = plt.gcf().axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no order fitted" in ax.get_title()
    if kind == "two-point":
        assert "two-point slope = 2.000 (not an observed order: no fit: 2 values of time.dt" in out
        assert float(row["two_point_slope"]) == pytest.approx(2.0) and "no fit: 2 values" in row["note"]
        assert legend == ["all runs: two-point slope 2.00 (no fit: 2 values)"]
    else:
        assert "no slope: 1 value of time.dt" in out and row["two_point_slope"] == ""
        assert legend == ["all runs: no slope (1 value)"]
    plt.close("all")


def test_euler_spectrum_has_a_legend_on_both_panels(tmp_path):
    import matplotlib.pyplot as plt

    for k in range(2):
        _euler_store(str(tmp_path / f"r{k}" / "store.zarr"), n=16, decay=1.0 + k)
    _fake_report(tmp_path)
    assert euler_spectrum.main([str(tmp_path)]) == 0
    spectrum_ax, enstrophy_ax = plt.gcf().axes
    assert [t.get_text() for t in spectrum_ax.get_legend().get_texts()] == ["r0 (step 2)", "r1 (step 2)"]
    assert [t.get_text() for t in enstrophy_ax.get_legend().get_texts()] == ["r0", "r1"]
    plt.close("all")


DOC_WRITERS = ("advection", "cli_latency", "device_check", "elasticity", "euler", "pde_baselines", "recon_authors", "recon_ddp",
               "recon_classical_choice", "recon_never_worse", "recon_table", "slurm_scale", "store_scale",
               "sweep_expand", "sweep_overhead")


def test_every_benchmark_that_writes_docs_asks_for_write():
    import glob
    import re

    for path in glob.glob(os.path.join(REPO, "benchmarks", "*.py")):
        text = open(path, encoding="utf-8").read()
        name = os.path.basename(path)[:-3]
        if name != "report" and re.search(r"write_section\(|publish\(|results\.md", text):
            assert name in DOC_WRITERS, f"{name} writes docs: add it to DOC_WRITERS and give it --write"
            assert re.search(r"add_write_option\(|\"--write\"", text), name


def test_publish_prints_and_writes_only_on_request(monkeypatch, capsys):
    from benchmarks import report

    calls = []
    monkeypatch.setattr(report, "write_section", lambda *a, **k: calls.append(a))
    report.publish(False, "S", "cmd", "| a |")
    assert not calls and "| a |" in capsys.readouterr().out
    report.publish(True, "S", "cmd", "| a |")
    assert calls == [("S", "cmd", "| a |")]


def test_recon_table_writes_docs_only_with_write(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, REPO)
    from benchmarks import recon_table

    fake_root = tmp_path / "repo"
    (fake_root / "docs").mkdir(parents=True)
    results = fake_root / "docs" / "results.md"
    results.write_text(f"old\n{recon_table.NOTES}\nmy notes\n", encoding="utf-8")
    monkeypatch.setattr(recon_table, "ROOT", str(fake_root))
    monkeypatch.setattr(recon_table, "collect", lambda sweeps: [{"fake": 1}])
    monkeypatch.setattr(recon_table, "render", lambda rows, command: "# the table")
    monkeypatch.setattr(sys, "argv", ["recon_table.py", "runs/x"])
    recon_table.main()
    assert "# the table" in capsys.readouterr().out
    assert results.read_text(encoding="utf-8").startswith("old")
    out = tmp_path / "t.md"
    monkeypatch.setattr(sys, "argv", ["recon_table.py", "runs/x", "--out", str(out)])
    recon_table.main()
    assert out.read_text(encoding="utf-8") == "# the table\n" and results.read_text(encoding="utf-8").startswith("old")
    monkeypatch.setattr(sys, "argv", ["recon_table.py", "runs/x", "--write"])
    recon_table.main()
    assert results.read_text(encoding="utf-8") == f"# the table\n\n{recon_table.NOTES}\nmy notes\n"

"""The report's figures tell the truth: read back from the matplotlib objects of a tiny
fabricated sweep (RunRecords and small stores written through StepStore).

The sweep: time.dt ∈ {0.1, 0.05} × network.width ∈ {8, 12, 16}; the final error depends
on width only (a factor 10 per width step), dt adds a tiny wobble, so width explains
almost all of the variance of log10(final error) although dt comes first in the sweep.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

from insr_hpc.analysis import figures
from insr_hpc.analysis.collect import RunRecord
from insr_hpc.store import StepStore, VarSpec

WIDTHS = {8: 1e-1, 12: 1e-2, 16: 1e-3}
STEPS = 4


def _advection_store(path: str, dt: float, error: float, steps_done: int) -> None:
    x = np.linspace(-2, 2, 33)
    t = np.arange(STEPS) * dt
    variables = {
        "step": VarSpec(("step",), (STEPS,), "int32", {}, np.arange(STEPS, dtype=np.int32)),
        "time": VarSpec(("step",), (STEPS,), "float64", {"units": "1"}, t),
        "x": VarSpec(("x",), (x.size,), "float64", {"units": "1"}, x),
        "field": VarSpec(("step", "x"), (STEPS, x.size), "float32", {"units": "1"}),
        "field_exact": VarSpec(("step", "x"), (STEPS, x.size), "float32", {"units": "1"}),
    }
    store = StepStore.create(path, variables, {"case": "advection", "workload": "pde", "config": {}})
    for k in range(steps_done):
        exact = np.exp(-((x - t[k]) ** 2) / 0.1)
        store.commit_step(k, {"field_exact": exact, "field": exact + error * np.sin(3 * x)})


def _euler_store(path: str, dt: float, error: float, steps_done: int, n: int = 16) -> None:
    xc = -1 + (np.arange(n) + 0.5) * 2 / n
    X, Y = np.meshgrid(xc, xc)
    base = np.stack([np.sin(np.pi * X) * np.cos(np.pi * Y), -np.cos(np.pi * X) * np.sin(np.pi * Y)], -1)
    t = np.arange(STEPS) * dt
    variables = {
        "time": VarSpec(("step",), (STEPS,), "float64", {}, t),
        "x": VarSpec(("x",), (n,), "float64", {"units": "1"}, xc),
        "y": VarSpec(("y",), (n,), "float64", {"units": "1"}, xc),
        "u": VarSpec(("step", "y", "x", "component"), (STEPS, n, n, 2), "float32"),
        "u_ref": VarSpec(("step", "y", "x", "component"), (STEPS, n, n, 2), "float32"),
        "kinetic_energy": VarSpec(("step",), (STEPS,), "float32"),
        "kinetic_energy_ref": VarSpec(("step",), (STEPS,), "float32"),
    }
    store = StepStore.create(path, variables, {"case": "euler", "workload": "pde", "config": {}})
    for k in range(steps_done):
        ref = np.exp(-t[k]) * base
        u = ref * (1 + error * X[..., None])
        store.commit_step(k, {"u": u, "u_ref": ref, "kinetic_energy": 0.5 * (u**2).sum() / n**2 * 4,
                              "kinetic_energy_ref": 0.5 * (ref**2).sum() / n**2 * 4})


def _sweep(root: str, case: str = "advection") -> list[RunRecord]:
    """Six runs; the worst (width 8, dt 0.1) stopped after 3 of 4 steps and is the only
    one whose sub-problems hit the iteration cap."""
    records = []
    k = 0
    for dt in (0.1, 0.05):
        for width, base in WIDTHS.items():
            error = base * (1.2 if dt == 0.1 else 1.0)
            run = f"{case}/r{k:03d}-dt={dt}_width={width}"
            done = 3 if (width, dt) == (8, 0.1) else STEPS
            (_euler_store if case == "euler" else _advection_store)(os.path.join(root, run, "store.zarr"), dt, error, done)
            series = np.full(STEPS, np.nan)
            series[:done] = error * np.linspace(0.1, 1, STEPS)[:done] / np.linspace(0.1, 1, STEPS)[done - 1]
            records.append(RunRecord(
                run=run, swept={"time.dt": dt, "network.width": width}, state="done", workload="pde", case=case,
                steps_done=done, steps_total=STEPS, capped_substeps=5 if (width, dt) == (8, 0.1) else 0,
                series={"rel_l2": series}, coord=np.arange(STEPS) * dt,
                final={"rel_l2": float(series[done - 1])}, worst={"rel_l2": float(np.nanmax(series))},
            ))
            k += 1
    return records


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("figs"))
    return root, _sweep(root)


def _close(fig):
    figures._plt().close(fig)


def test_the_colour_key_is_the_one_that_explains_the_variance(sweep):
    _, records = sweep
    shares = figures.variance_shares(records)
    assert shares["network.width"] > 0.99 > 0.01 > shares["time.dt"]
    assert figures.colour_key(records) == ("network.width", pytest.approx(shares["network.width"]))
    fig = figures.error_history(None, records)
    (ax,) = fig.axes
    assert "colour: network.width, 100% of the variance of log10(final rel_l2)" in ax.get_title()
    legend = ax.get_legend()
    assert legend is not None and legend.get_title().get_text() == "network.width"
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["8", "12", "16", figures.CAP_LABEL]
    _close(fig)


def test_the_capped_run_is_dashed_and_the_others_solid(sweep):
    _, records = sweep
    fig = figures.error_history(None, records)
    (ax,) = fig.axes
    data_lines = ax.get_lines()
    assert len(data_lines) == len(records)
    styles = [line.get_linestyle() for line in data_lines]
    capped = [figures.is_capped(r) for r in records]
    assert capped.count(True) == 1
    assert styles == ["--" if c else "-" for c in capped]
    cap_handle = ax.get_legend().legend_handles[-1]
    assert cap_handle.get_linestyle() == "--"
    _close(fig)


def test_one_run_or_no_swept_key_gets_a_plain_legend(sweep):
    _, records = sweep
    fig = figures.error_history(None, records[:1])
    legend = fig.axes[0].get_legend()
    assert legend is not None and legend.get_title().get_text() == ""
    assert [t.get_text() for t in legend.get_texts()] == [records[0].run, figures.CAP_LABEL]
    assert "colour:" not in fig.axes[0].get_title()
    _close(fig)
    plain = [RunRecord(**{**r.__dict__, "swept": {}}) for r in records[1:3]]
    fig = figures.error_history(None, plain)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [r.run for r in plain]
    _close(fig)


def test_the_heatmap_hatches_the_capped_cell_and_says_so(sweep):
    _, records = sweep
    fig = figures.final_error_heatmap(records)
    ax = fig.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [figures.CAP_LABEL]
    _close(fig)


def _panels(fig) -> list:
    """The image/line axes of a snapshot figure (colour bars left out), row by row."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("case", ["advection", "euler"])
def test_snapshots_show_prediction_reference_and_error_at_the_same_time(tmp_path, case):
    records = _sweep(str(tmp_path), case)
    pairs = figures.best_and_worst(records)
    assert [tag for tag, _ in pairs] == ["best", "worst"]
    assert pairs[1][1].steps_done == 3 and pairs[0][1].steps_done == STEPS  # the worst stopped early
    fig = figures.snapshot(case, "pde", records, str(tmp_path))
    panels = _panels(fig)
    per_row = 3 if case == "advection" else 4
    assert len(panels) == 2 * per_row
    times = set()
    for row, tag in zip((panels[:per_row], panels[per_row:]), ("best", "worst"), strict=True):
        titles = [ax.get_title() for ax in row[:3]]
        assert [t.split(":")[1].split()[0] for t in titles] == ["prediction", "reference", "error"], titles
        assert all(t.startswith(f"{tag}:") for t in titles)
        times |= {re.search(r"t = ([0-9.e+-]+)", t).group(1) for t in titles}
        for ax in row[:3]:
            assert ax.get_xlabel() and ax.get_ylabel() and "(" in ax.get_xlabel()
    # best has dt 0.05 (steps 0..3: t ≤ 0.15), worst dt 0.1 with 3 steps (t ≤ 0.2): the latest shared time is 0.1
    assert times == {"0.1"}
    if case == "advection":
        assert panels[0].get_ylim() == panels[1].get_ylim() == panels[3].get_ylim() == panels[4].get_ylim()
    else:
        images = [ax.get_images()[0] for ax in panels if ax.get_images()]
        assert len(images) == 6
        clims = [im.get_clim() for im in images]
        assert clims[0] == clims[1] == clims[3] == clims[4]  # prediction and reference alike, both runs
        assert len(fig.axes) - len(panels) == 6  # a colour bar per map
        assert all(ax.get_legend() is not None for ax in (panels[3], panels[7]))  # kinetic-energy histories
    annotations = [t.get_text() for ax in panels for t in ax.texts]
    assert sum(figures.CAP_LABEL in a for a in annotations) == 1  # the worst (capped) run's row
    _close(fig)

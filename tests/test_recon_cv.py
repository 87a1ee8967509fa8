"""Cross-validation over independent clusters (issue 22): the hybrid's blend weight and
its gate (insr_hpc/fields/crossval.py), the classical model chosen by data
(``network.model: classical``, the hybrid's ``base: auto``) and the thin-validation
warning through real runs, store, run.json, status and report."""


import numpy as np
import pytest
import xarray as xr

from _small import run_recon, write_tas

from insr_hpc.cli import main
from insr_hpc.fields.classical import IDW, ClassicalSelector
from insr_hpc.fields.crossval import choose_blend, clusters_of, deal_folds
from insr_hpc.fields.params import ClassicalParams, IDWParams

H, W, T = 20, 24, 12
LAT, LON = np.linspace(20, 50, H), np.linspace(-130, -90, W)
Y, X = np.meshgrid(np.linspace(0, 1, H), np.linspace(0, 1, W), indexing="ij")


def synthetic(seed: int):
    """truth f = a known smooth function; the observations f + sensor noise; a base b and a
    network n, each the truth plus its own persistent (per-position) error, so that the
    residual n − b has an analytic best weight over the grid."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None, None]
    truth = 10 * np.sin(2 * np.pi * X) * np.cos(np.pi * Y) + 3 * np.cos(0.4 * t + 2 * X)
    obs = truth + rng.normal(scale=0.3, size=truth.shape)  # sensor noise
    e_b = rng.normal(scale=1.0, size=(1, H, W)) + 0.05 * rng.normal(size=truth.shape)
    e_n = rng.normal(scale=1.0, size=(1, H, W)) + 0.05 * rng.normal(size=truth.shape)
    base, net = truth + e_b, truth + e_n
    d_grid, r_grid = (net - base).ravel(), (truth - base).ravel()
    w_star = float((d_grid * r_grid).sum() / (d_grid * d_grid).sum())  # argmin_w ‖b + w(n − b) − f‖²
    return truth, obs, base, net, w_star, rng


def grid_mse(truth, base, net, w):
    return float(((base + w * (net - base) - truth) ** 2).mean())


def cv_weight(obs, base, net, sensors, folds=10, min_z=1.0, min_clusters=6, seed=0):
    """choose_blend on whole validation sensors, as the workload calls it."""
    mask = np.zeros((T, H * W), bool)
    mask[:, sensors] = True
    mask = mask.reshape(T, H, W)
    cluster, n, kind = clusters_of(mask, True, 6)
    fold_of, k = deal_folds(n, folds, seed)
    assert kind == "sensor" and n == len(sensors)
    d, r = (net - base)[mask], (obs - base)[mask]
    return choose_blend(d, r, fold_of[cluster[mask]], k, n, 1.0, min_z, min_clusters)


def single_split_weight(obs, base, net, sensors, min_z=1.0):
    """The rule before issue 22: least squares on the validation sensors, kept when at
    least min_z cluster-robust (per sensor) standard errors above zero."""
    mask = np.zeros((T, H * W), bool)
    mask[:, sensors] = True
    d, r = (net - base).reshape(T, -1)[mask], (obs - base).reshape(T, -1)[mask]
    pix = np.nonzero(mask)[1]
    dd = (d * d).sum()
    w = min(max((d * r).sum() / dd, 0.0), 1.0)
    scores = np.bincount(np.unique(pix, return_inverse=True)[1], d * (r - w * d))
    se = np.sqrt((scores**2).sum()) / dd
    return w if w > 0 and not se * min_z > w else 0.0


def test_cv_chooses_a_blend_weight_near_the_analytic_optimum():
    for seed in range(3):
        truth, obs, base, net, w_star, rng = synthetic(seed)
        assert 0.3 < w_star < 0.7  # equal error variances: about one half
        sensors = rng.permutation(H * W)[:120]
        choice = cv_weight(obs, base, net, sensors)
        assert choice.kept and choice.z > 1, choice
        assert abs(choice.w - w_star) < 0.12, (choice.w, w_star)
        # the weight found is (nearly) as good on the whole grid as the optimum
        assert grid_mse(truth, base, net, choice.w) < 1.03 * grid_mse(truth, base, net, w_star)
        # the cross-validated score is the blend's out-of-fold MSE, below the base's
        assert choice.score < choice.base_mse


def test_single_split_with_two_sensors_is_worse_on_average_than_cv():
    single, cv = [], []
    for seed in range(16):
        truth, obs, base, net, w_star, rng = synthetic(100 + seed)
        sensors = rng.permutation(H * W)[:40]
        single.append(grid_mse(truth, base, net, single_split_weight(obs, base, net, sensors[:2])))
        cv.append(grid_mse(truth, base, net, cv_weight(obs, base, net, sensors).w))
    assert np.mean(cv) < 0.95 * np.mean(single), (np.mean(cv), np.mean(single))
    # and CV is never far from the optimum, while two sensors sometimes are
    assert max(cv) < max(single)


def test_two_validation_sensors_refuse_the_weight():
    truth, obs, base, net, w_star, rng = synthetic(7)
    choice = cv_weight(obs, base, net, rng.permutation(H * W)[:2])
    assert not choice.kept and choice.w == 0.0 and "min_clusters" in choice.reason
    assert choice.score == choice.base_mse
    # no gain at all (the network is the base plus noise): refused even with many sensors
    noise = base + np.random.default_rng(1).normal(scale=1.0, size=(1, H, W))
    assert not cv_weight(obs, base, noise, rng.permutation(H * W)[:120], min_z=1.0).kept


def regimes(seed: int):
    """Two regimes a stationary kernel cannot both fit: a high, smooth plateau beside a
    low, finely rippled valley (the ripples pull the fitted range short, and kriging
    then falls back to the field's mean between the plateau's sensors)."""
    rng = np.random.default_rng(seed)
    ph = rng.random(2) * 6
    h, w = 24, 30
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    rough = 20 * np.sin(2 * np.pi * 12 * x + ph[0]) * np.sin(2 * np.pi * 12 * y + ph[1])
    vals = np.stack([np.where(x < 0.5, 30 + 2 * y, -30 + rough) + 0.3 * t for t in range(4)])
    vals = vals + rng.normal(scale=0.01, size=vals.shape)
    obs = np.zeros(vals.shape, bool)
    obs.reshape(4, -1)[:, rng.permutation(h * w)[:90]] = True
    return vals, obs, np.linspace(20, 50, h), np.linspace(-130, -90, w)


def smooth_gp_like(seed: int):
    rng = np.random.default_rng(seed)
    k, ph, a = rng.normal(size=(6, 2)) * 2.0, rng.random(6) * 6.28, rng.normal(size=6)
    vals = np.stack([5 * sum(a[i] * np.cos(2 * np.pi * (k[i, 0] * Y + k[i, 1] * X) + ph[i] + 0.2 * t) for i in range(6))
                     + rng.normal(scale=0.02, size=(H, W)) for t in range(4)])
    obs = np.zeros(vals.shape, bool)
    obs.reshape(4, -1)[:, rng.permutation(H * W)[:90]] = True
    return vals, obs, LAT, LON


def families(chosen: dict) -> set[str]:
    """The model families in a selector's choice (both parts of an average)."""
    return {c["model"] for c in chosen["of"]} if chosen["model"] == "stack" else {chosen["model"]}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classical_selector_picks_idw_where_the_stationary_kernel_is_wrong_and_kriging_on_a_smooth_field(seed):
    for make, want in ((regimes, "idw"), (smooth_gp_like, "kriging")):
        vals, obs, lat, lon = make(seed)
        valid = np.ones(vals.shape[1:], bool)
        sel = ClassicalSelector(ClassicalParams())
        found = sel.select(vals, obs, valid, lat, lon, fixed_positions=True)
        assert families(found["chosen"]) == {want}, (make.__name__, found["chosen"])
        assert found["clusters"] == 90 and found["cluster_kind"] == "sensor" and found["cv"] == "kfold"
        assert found["folds"] == 5
        assert all(np.isfinite(c["cv_mse"]) and c["cv_mse_se"] > 0 for c in found["candidates"])
        if want == "kriging":  # the choice is right on the truth too: off the sensors it beats IDW's default
            hidden = ~obs
            chosen_err = ((sel.interpolate(vals, obs, valid, lat, lon) - vals)[hidden] ** 2).mean()
            idw_err = ((IDW(IDWParams()).interpolate(vals, obs, valid, lat, lon) - vals)[hidden] ** 2).mean()
            assert chosen_err < idw_err, (chosen_err, idw_err)


# -- through real runs: the warning, the fallback, the classical choice ---------------------
def write_field(path, n_t=10, h=16, w=20):
    lat, lon = np.linspace(20, 50, h), np.linspace(-130, -90, w)
    y, x = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    t = np.arange(n_t)[:, None, None]
    vals = 280 + 6 * np.sin(2 * np.pi * x + 0.2 * t) * np.cos(np.pi * y) + 2 * np.cos(3 * x + y)
    write_tas(path, vals, lat, lon)
    return vals


TINY = ["network.width=16", "network.layers=2", "network.latent=4", "train.epochs=2", "train.batch_steps=5",
        "train.eval_every=1", "device=cpu"]


def run(tmp, name, path, *extra):
    return run_recon(tmp, name, path, *extra)


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    path = tmp / "f.nc"
    return tmp, path, write_field(str(path))


def test_thin_validation_is_flagged_below_the_threshold_and_not_above(field):
    tmp, path, _ = field
    # 320 points × 0.1 = 32 sensors; a quarter held back whole: 8 validation sensors
    common = [*TINY, "network.model=hybrid", "network.base=idw", "task.name=task1", "task.ratio=0.1"]
    code, state, attrs, run_dir = run(tmp, "thin", path, *common, "train.min_clusters=20")
    assert code == 0 and state["state"] == "done"  # a warning, not suspect
    assert attrs["validation_clusters"] == 8 and attrs["thin_validation"]
    assert "8 independent validation clusters (sensors) < train.min_clusters=20" in attrs["warning"]
    summary = state["summary"]
    assert summary["thin_validation"] is True and summary["validation_clusters"] == 8
    assert summary["warning"] == attrs["warning"]
    cv = attrs["validation_cv"]
    assert cv["clusters"] == 8 and cv["cluster_kind"] == "sensor" and cv["folds"] == 8 and cv["mse"] > 0
    assert attrs["blend_choice"]["clusters"] == 8
    # status shows it (table and --json); the report marks it
    from insr_hpc.analysis.report import summary_rows
    from insr_hpc.analysis.collect import collect_run
    from insr_hpc.analysis.status import as_record, format_table, run_status

    st = run_status(str(run_dir))
    assert "thin validation (8 clusters)" in format_table([st])
    assert as_record(st)["warning"] == attrs["warning"] and as_record(st)["validation_clusters"] == 8
    header, rows = summary_rows([collect_run(str(run_dir), str(tmp / "runs"))])
    assert "warning" in header and rows[0]["warning"].startswith("⚠ thin validation")

    code, state, attrs, run_dir = run(tmp, "enough", path, *common, "train.min_clusters=5")
    assert code == 0 and state["state"] == "done"
    assert attrs["validation_clusters"] == 8 and not attrs["thin_validation"] and attrs["warning"] == ""
    assert state["summary"]["thin_validation"] is False and "warning" not in state["summary"]
    st = run_status(str(run_dir))
    assert st["warning"] is None and "warning" not in format_table([st]).splitlines()[0]


@pytest.mark.parametrize("refit", [True, False])
def test_two_validation_sensors_return_the_base_bit_for_bit(field, refit):
    tmp, path, truth = field
    # 320 × 0.025 = 8 sensors, a quarter held back: 2 validation sensors (< network.min_clusters 6)
    code, state, attrs, run_dir = run(tmp, f"two_{refit}", path, *TINY, "network.model=hybrid", "network.base=idw",
                                      "task.name=task1", "task.ratio=0.025", "network.min_z=0",
                                      f"network.refit={str(refit).lower()}")
    assert code == 0 and attrs["validation_clusters"] == 2 and attrs["thin_validation"]
    assert attrs["blend_weight"] == 0.0 and "min_clusters" in attrs["blend_choice"]["reason"]
    ds = xr.open_zarr(str(run_dir / "store.zarr"))
    observed, val = ds.observed.values.astype(bool), ds.validation.values.astype(bool)
    # refit (the default): w refused, the base interpolates every observation, validation ones too;
    # else the training observations only
    points = observed if refit else observed & ~val
    base = IDW(IDWParams()).interpolate(truth.astype(np.float32).astype(np.float64), points,
                                        np.ones(truth.shape[1:], bool), ds.latitude.values, ds.longitude.values)
    np.testing.assert_array_equal(ds.reconstruction.values, base.astype(np.float32))
    assert attrs["final_errors"]["mse"] == attrs["base_errors"]["mse"]
    assert bool(attrs["refit"]) is refit and (not refit or attrs["refit"]["observations"] == "training + validation")
    # the validation figures stay out of sample (with refit: the base's leave-one-out estimates)
    assert attrs["final_errors"]["val_mse"] == attrs["base_errors"]["val_mse"] > 0


def test_a_refused_auto_hybrid_is_the_classical_model_of_every_observation(field):
    """The default's fallback is exactly what a user interpolating every observation gets:
    network.model=classical with train.validation=0, bit for bit, choice included."""
    tmp, path, _ = field
    common = ["task.name=task1", "task.ratio=0.025"]
    code, _, hyb, hyb_dir = run(tmp, "auto_refused", path, *TINY, "network.model=hybrid", "network.base=auto",
                                *common)
    assert code == 0 and hyb["blend_weight"] == 0.0
    code, _, cla, cla_dir = run(tmp, "classical_all", path, "network.model=classical", "train.validation=0",
                                "train.select=last", "device=cpu", *common)
    assert code == 0
    a = xr.open_zarr(str(hyb_dir / "store.zarr")).reconstruction.values
    b = xr.open_zarr(str(cla_dir / "store.zarr")).reconstruction.values
    np.testing.assert_array_equal(a, b)
    assert hyb["chosen_model"] == hyb["refit"]["model"] == cla["chosen_model"]
    assert hyb["final_errors"]["mse"] == cla["final_errors"]["mse"]


def test_classical_model_and_auto_base_are_chosen_by_cross_validation(field):
    tmp, path, _ = field
    code, state, attrs, _ = run(tmp, "classical", path, "network.model=classical", "task.name=task3",
                                "task.ratio=0.2", "network.steps=4", "device=cpu")
    assert code == 0 and state["state"] == "done"
    sel = attrs["classical_selection"]
    assert attrs["chosen_model"] == sel["chosen"]["label"] == state["summary"]["chosen_model"]
    assert sel["cluster_kind"] == "tile" and sel["steps"] == 4 and sel["of_steps"] == 10
    # 3 powers × 3 neighbour counts + 2 kernels, and the mix of the two best when its weight is inside (0, 1)
    singles = sel["candidates"][:11]
    assert len(sel["candidates"]) == 12 and all(c["model"] != "stack" for c in singles)
    mix = sel["candidates"][11]
    two = sorted(singles, key=lambda c: c["cv_mse"])[:2]
    assert mix["model"] == "stack" and mix["weight"] == 0.5
    assert [c["label"] for c in mix["of"]] == [c["label"] for c in two]
    # the average when the CV cannot tell the two apart, else the best
    assert sel["chosen"] == (mix if not (mix["z"] or 0) >= 1.0 else two[0])
    # task3: validation clusters are the lat/lon tiles (6 × 6 by default) holding validation points
    assert attrs["validation_cv"]["cluster_kind"] == "tile" and 20 <= attrs["validation_cv"]["clusters"] <= 36
    code, state, attrs, _ = run(tmp, "auto", path, *TINY, "network.model=hybrid", "network.base=auto",
                                "task.name=task1", "task.ratio=0.1")
    assert code == 0 and attrs["base"] == "auto"
    # with network.refit (the default) the base is chosen by CV over every sensor (32), and
    # both the blend's validation and the stored reconstruction use it
    assert attrs["base_selection"] == attrs["refit"]["selection"] and attrs["base_selection"]["clusters"] == 32
    assert attrs["chosen_model"] == attrs["refit"]["model"] == attrs["refit"]["selection"]["chosen"]["label"]
    assert attrs["base_selection"]["cluster_kind"] == "sensor" and attrs["base_selection"]["cv"] == "kfold"


@pytest.mark.parametrize("override, key", [("network.folds=1", "network.folds"),
                                           ("network.candidates=[idw,spline]", "network.candidates"),
                                           ("train.validation_sensors=1.5", "train.validation_sensors"),
                                           ("train.min_clusters=0", "train.min_clusters")])
def test_bad_cv_keys_are_one_line_errors(field, capsys, override, key):
    tmp, path, _ = field
    model = "network.model=classical" if override.startswith("network") else "network.model=idw"
    code = main(["run", "configs/reconstruct.yaml", f"output.root={tmp / 'bad'}", f"data.path={path}",
                 "data.variable=tas", model, override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("insr-hpc: error:") and key in err[0]
    assert not (tmp / "bad").exists()


def test_refit_blends_over_the_interpolant_of_every_observation(field):
    """network.refit (the default): b is the interpolant of every observation, and the gate
    scores it at each validation point by its leave-one-out estimate there; without refit
    b is the training observations' interpolant. The network is the same in both runs
    (same seed, data and epochs), so n recovered from one run predicts the other:
    reconstruction = b + w (n − b) with each run's own b and w."""
    from insr_hpc.fields.classical import idw_loo, unit_sphere
    from insr_hpc.recon import metrics
    from scipy.spatial import cKDTree

    tmp, path, truth = field
    common = [*TINY, "network.width=64", "network.layers=3", "network.latent=16", "train.epochs=100",
              "train.eval_every=100", "train.batch_steps=2", "network.model=hybrid", "network.base=idw",
              "task.name=task3", "task.ratio=0.2", "network.min_z=0", "network.min_clusters=2", "train.select=last"]
    out = {}
    for refit in ("true", "false"):
        code, _, attrs, run_dir = run(tmp, f"blend_{refit}", path, *common, f"network.refit={refit}")
        assert code == 0
        out[refit] = (attrs, xr.open_zarr(str(run_dir / "store.zarr")))
    (a, ds_a), (b, ds_b) = out["true"], out["false"]
    assert a["refit"]["model"] == "idw" and b["refit"] == {}
    observed, val = ds_a.observed.values.astype(bool), ds_a.validation.values.astype(bool)
    vals = truth.astype(np.float32).astype(np.float64)
    lat, lon, valid = ds_a.latitude.values, ds_a.longitude.values, np.ones(truth.shape[1:], bool)
    idw = IDW(IDWParams())
    b_all = idw.interpolate(vals, observed, valid, lat, lon)
    b_train = idw.interpolate(vals, observed & ~val, valid, lat, lon)
    lo, hi = a["metric_range"]["lo"], a["metric_range"]["hi"]
    # the bases' own figures: b of every observation (refit), scored at the validation
    # points by leave-one-out; b of the training observations (no refit)
    held = np.full(vals.shape, np.nan)
    pts = unit_sphere(lat, lon)
    for t in range(vals.shape[0]):
        o = np.flatnonzero(observed[t].ravel())
        held[t].reshape(-1)[o] = idw_loo(cKDTree(pts[o]), pts[o], vals[t].ravel()[o], 8, 2.0)
    assert a["base_errors"]["mse"] == pytest.approx(metrics.errors(b_all, vals, valid, observed, lo, hi)["mse"], rel=1e-6)
    assert a["base_errors"]["val_mse"] == pytest.approx(metrics.masked_mse(held, vals, val, lo, hi), rel=1e-6)
    assert b["base_errors"]["mse"] == pytest.approx(metrics.errors(b_train, vals, valid, observed, lo, hi)["mse"],
                                                    rel=1e-6)
    assert a["base_errors"]["val_mse"] != b["base_errors"]["val_mse"]
    w_a, w_b = a["blend_weight"], b["blend_weight"]
    assert w_a > 0 and w_b > 0, (a["blend_choice"], b["blend_choice"])
    rec_a = ds_a.reconstruction.values.astype(np.float64)
    rec_b = ds_b.reconstruction.values.astype(np.float64)
    net = b_train + (rec_b - b_train) / w_b
    np.testing.assert_allclose(rec_a, b_all + w_a * (net - b_all), atol=2e-3 / min(w_a, w_b))


# -- leave-one-out: the closed forms against refitting without each point ----------------------
@pytest.mark.parametrize("model", ["kriging", "idw"])
def test_leave_one_out_estimates_equal_interpolating_without_the_point(model):
    """interpolate(loo=True): at every observed point, what the same interpolant gives from
    the step's other observations (kriging: the hyperparameters of the step's fit, held)."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    from insr_hpc.fields.classical import Kriging, _gp_fit, _kernel, unit_sphere
    from insr_hpc.fields.params import KrigingParams

    vals, obs, lat, lon = smooth_gp_like(3)
    vals, obs = vals[:2], obs[:2]
    valid = np.ones(vals.shape[1:], bool)
    interp = Kriging(KrigingParams(nu=1.5)) if model == "kriging" else IDW(IDWParams(neighbours=6, power=2.0))
    grid, held = interp.interpolate(vals, obs, valid, lat, lon, loo=True)
    np.testing.assert_array_equal(grid, interp.interpolate(vals, obs, valid, lat, lon))  # loo changes nothing else
    assert np.isnan(held[~obs]).all() and np.isfinite(held[obs]).all()
    pts = unit_sphere(lat, lon)
    kernel = _kernel(1.5, 0.1, 1e-3)
    for t in range(2):
        o = np.flatnonzero(obs[t].ravel())
        y = vals[t].ravel()[o]
        if model == "kriging":
            kernel = _gp_fit(kernel, pts[o], y).kernel_  # the step's fit, as interpolate makes it
        for i in (0, 17, len(o) - 1):
            rest = np.delete(np.arange(len(o)), i)
            if model == "kriging":
                # the same model without the point: its kernel (in standardised units) and
                # the standardisation of the step's fit (all its values)
                m, s = y.mean(), y.std()
                gp = GaussianProcessRegressor(kernel, normalize_y=False, optimizer=None).fit(pts[o[rest]],
                                                                                              (y[rest] - m) / s)
                want = m + s * gp.predict(pts[o[i]][None])[0]
                assert held[t].ravel()[o[i]] == pytest.approx(want, rel=1e-9, abs=1e-9)
                assert abs(want - y[i]) > 0.1  # a real estimate, not the point's own value
            else:
                miss = obs[t].copy()
                miss.ravel()[o[i]] = False
                want = IDW(IDWParams(neighbours=6, power=2.0)).interpolate(vals[t:t + 1], miss[None], valid, lat, lon)
                assert held[t].ravel()[o[i]] == pytest.approx(want[0].ravel()[o[i]], rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_leave_one_out_and_kfold_agree_where_the_choice_is_clear(seed):
    """Both CVs pick IDW on the regime field and kriging on the smooth one; leave-one-out
    records its spread over clusters (no folds)."""
    for make, want in ((regimes, "idw"), (smooth_gp_like, "kriging")):
        vals, obs, lat, lon = make(seed)
        valid = np.ones(vals.shape[1:], bool)
        for cv in ("loo", "kfold"):
            found = ClassicalSelector(ClassicalParams(cv=cv)).select(vals, obs, valid, lat, lon, fixed_positions=True)
            assert families(found["chosen"]) == {want} and found["cv"] == cv, (make.__name__, cv, found["chosen"])
            assert found["folds"] == (5 if cv == "kfold" else None) and found["clusters"] == 90


def test_paired_z_measures_a_difference_in_standard_errors_across_clusters():
    """b's squared errors exceed a's by 0.1 on average with a cluster-level spread of 1:
    z ≈ 0.1 / (1 / √C); with the spread tiny, z is large; equal errors give z = 0."""
    from insr_hpc.fields.classical import paired_z

    rng = np.random.default_rng(0)
    n_c, per = 400, 20
    cluster = np.repeat(np.arange(n_c), per)
    shift = 0.1 + rng.normal(size=n_c)  # per-cluster excess of b over a
    ea = rng.random(cluster.size)
    eb = ea + shift[cluster]
    z = paired_z(ea, eb, cluster)
    want = shift.mean() / (shift.std(ddof=1) / np.sqrt(n_c))
    assert z == pytest.approx(want, rel=1e-9) and 1.0 < z < 3.5
    assert paired_z(ea, ea + 0.1 + 1e-3 * rng.normal(size=cluster.size), cluster) > 50
    assert paired_z(ea, ea.copy(), cluster) == 0.0


def test_the_selector_averages_the_two_best_only_when_cv_cannot_tell_them_apart():
    """stack_z 0: the single best always (a positive difference is 'clear'); a huge stack_z:
    the average of the two best, whose CV MSE is recorded beside theirs."""
    vals, obs, lat, lon = smooth_gp_like(0)
    valid = np.ones(vals.shape[1:], bool)
    single = ClassicalSelector(ClassicalParams(stack_z=0.0)).select(vals, obs, valid, lat, lon, fixed_positions=True)
    assert single["chosen"]["model"] != "stack"
    two = sorted(single["candidates"][:-1], key=lambda c: c["cv_mse"])[:2]
    assert single["chosen"]["label"] == two[0]["label"]
    sel = ClassicalSelector(ClassicalParams(stack_z=1e9))
    mixed = sel.select(vals, obs, valid, lat, lon, fixed_positions=True)
    chosen = mixed["chosen"]
    assert chosen["model"] == "stack" and chosen["weight"] == 0.5 and chosen["z"] > 0
    assert [c["label"] for c in chosen["of"]] == [c["label"] for c in two]
    assert chosen["cv_mse"] == mixed["candidates"][-1]["cv_mse"] and np.isfinite(chosen["cv_mse"])
    # its reconstruction is the average of the two interpolants'
    from insr_hpc.fields.classical import _build

    parts = [_build(c, sel.params).interpolate(vals[:2], obs[:2], valid, lat, lon) for c in chosen["of"]]
    np.testing.assert_allclose(sel.interpolate(vals[:2], obs[:2], valid, lat, lon), 0.5 * (parts[0] + parts[1]),
                               rtol=0, atol=1e-12)


def test_a_chosen_stack_interpolates_as_its_mix():
    from insr_hpc.fields.classical import Kriging, Stack
    from insr_hpc.fields.params import KrigingParams

    vals, obs, lat, lon = smooth_gp_like(1)
    vals, obs = vals[:2], obs[:2]
    valid = np.ones(vals.shape[1:], bool)
    a, b = IDW(IDWParams(neighbours=4)), Kriging(KrigingParams(nu=0.5))
    mix = Stack(a, b, 0.3)
    want = 0.3 * a.interpolate(vals, obs, valid, lat, lon) + 0.7 * b.interpolate(vals, obs, valid, lat, lon)
    np.testing.assert_allclose(mix.interpolate(vals, obs, valid, lat, lon), want, rtol=0, atol=1e-12)
    grid, held = mix.interpolate(vals, obs, valid, lat, lon, loo=True)
    np.testing.assert_allclose(grid, want, rtol=0, atol=1e-12)
    assert np.isfinite(held[obs]).all() and np.isnan(held[~obs]).all()

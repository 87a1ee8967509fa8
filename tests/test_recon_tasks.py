"""Observation patterns of the four tasks and the held-out metric."""

import numpy as np
import pytest

from insr_hpc.recon.metrics import errors, idw
from insr_hpc.recon.tasks import count, observation_mask

T = 30
VALID = np.ones((20, 25), dtype=bool)
VALID[:5, :8] = False  # "land"
N_VALID = int(VALID.sum())


def masks(task, ratio=0.1, ratio_min=0.02, seed=1):
    return observation_mask(task, ratio, ratio_min, VALID, T, seed)


@pytest.mark.parametrize("task", ["task1", "task2", "task3", "task4"])
def test_only_valid_points_are_observed_and_seed_reproduces(task):
    m = masks(task)
    assert m.shape == (T, *VALID.shape)
    assert not (m & ~VALID).any()
    assert (m == masks(task)).all()
    assert (m != masks(task, seed=2)).any()


def test_task1_fixed_count_at_fixed_positions():
    m = masks("task1")
    assert (m.reshape(T, -1).sum(1) == count(0.1, N_VALID)).all()
    assert (m == m[0]).all()


def test_task2_random_count_at_fixed_positions():
    m = masks("task2")
    n = m.reshape(T, -1).sum(1)
    assert n.min() >= count(0.02, N_VALID) and n.max() <= count(0.1, N_VALID)
    assert len(set(n)) > 3
    # fixed positions: every step observes a prefix of one ordering, so the smaller sets
    # are contained in the largest
    biggest = m[np.argmax(n)]
    assert not (m & ~biggest).any()


def test_task3_fixed_count_at_random_positions():
    m = masks("task3")
    assert (m.reshape(T, -1).sum(1) == count(0.1, N_VALID)).all()
    assert sum((m[t] != m[0]).any() for t in range(1, T)) == T - 1
    # positions are spread over the valid points, not stuck in one place
    assert (m.any(0) == VALID).mean() > 0.9


def test_task4_random_count_at_random_positions():
    m = masks("task4")
    n = m.reshape(T, -1).sum(1)
    assert n.min() >= count(0.02, N_VALID) and n.max() <= count(0.1, N_VALID) and len(set(n)) > 3
    biggest = m[np.argmax(n)]
    assert (m & ~biggest).any()


def test_observed_points_never_enter_the_held_out_error():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(T, *VALID.shape)) + 280.0
    truth[:, ~VALID] = np.nan
    m = masks("task3")
    pred = truth.copy()
    pred[m] += 5.0  # wrong only where observed
    e = errors(pred, truth, VALID, m, 270.0, 290.0)
    assert e["mse_unobserved"] == 0.0
    assert e["mse"] == pytest.approx(25.0 / 400.0 * m.sum() / (T * N_VALID))
    assert e["rmse"] == pytest.approx(np.sqrt(25.0 * m.sum() / (T * N_VALID)))


def test_idw_keeps_observations_and_reproduces_a_constant_field():
    lat, lon = np.linspace(-10, 10, 20), np.linspace(0, 350, 25)
    truth = np.full((T, *VALID.shape), 290.0)
    truth[:, ~VALID] = np.nan
    m = masks("task4")
    pred = idw(truth, m, VALID, lat, lon)
    assert np.allclose(pred[:, VALID], 290.0)
    assert np.isnan(pred[:, ~VALID]).all()
    ramp = truth + np.arange(T)[:, None, None]
    pred = idw(ramp, m, VALID, lat, lon)
    assert np.allclose(pred[m], ramp[m])

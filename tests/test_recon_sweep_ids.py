"""Readable run ids when a sweep value is a whole block, and labels for them."""

import pytest

from insr_hpc.config.sweep import sweep_points
from insr_hpc.errors import ConfigError

BLOCKS = [{"model": "mmgn", "width": 256}, {"model": "siren", "depth": 5, "width": 512}]


def test_a_block_value_is_named_by_its_tag():
    points = sweep_points({"sweep": {"grid": {"network": BLOCKS, "task.name": ["task1", "task3"]}}})
    assert [p.run_id for p in points] == ["r000-network=mmgn_name=task1", "r001-network=mmgn_name=task3",
                                          "r002-network=siren_name=task1", "r003-network=siren_name=task3"]


def test_labels_name_the_values_and_must_match_them():
    sweep = {"grid": {"network": BLOCKS + [{"model": "siren", "width": 64}]},
             "labels": {"network": ["mmgn", "siren512", "siren64"]}}
    assert [p.run_id for p in sweep_points({"sweep": sweep})] == [
        "r000-network=mmgn", "r001-network=siren512", "r002-network=siren64"]
    with pytest.raises(ConfigError, match=r"sweep.labels.network: expected 3 names"):
        sweep_points({"sweep": {**sweep, "labels": {"network": ["a", "b"]}}})
    with pytest.raises(ConfigError, match=r"sweep.labels.seed: names no key"):
        sweep_points({"sweep": {**sweep, "labels": {"seed": ["a"]}}})

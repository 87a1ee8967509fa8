"""docs/config.md is exactly what the schema generates, and every key has a meaning."""

from __future__ import annotations

import dataclasses

from insr_hpc.reference import DOC, UNDOCUMENTED, config_reference


def test_config_reference_is_up_to_date():
    with open(DOC, encoding="utf-8") as fh:
        on_disk = fh.read()
    assert on_disk == config_reference(), (
        "docs/config.md is out of date: regenerate it with `python -m insr_hpc.reference --write`"
    )


def test_every_key_has_a_type_default_and_meaning():
    text = config_reference()
    assert UNDOCUMENTED not in text, [line for line in text.splitlines() if UNDOCUMENTED in line]
    from insr_hpc.pde.optimizers import OPTIMIZERS

    for name in OPTIMIZERS.names():
        for f in dataclasses.fields(OPTIMIZERS.get(name).Params):
            assert f.name == "name" or f"| `optim.{f.name}` |" in text, (name, f.name)
    for key in ("time.dt", "launch.slurm.signal_delay_s", "launch.ddp.nproc_per_node", "train.lr_by_model",
                "problem.wavenumber", "network.omega0", "task.ratio_min", "sweep.zip"):
        assert f"| `{key}` |" in text, key
    assert "| `time.steps` | int | `240` | time steps after the initial condition |" in text

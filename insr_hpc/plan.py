"""From a config file and overrides to the list of RunSpecs a submit will run.

Everything is validated here, before any directory is created: every sweep point's
config, the backend name and the output root's writability.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from insr_hpc.catalog import build_config
from insr_hpc.config import apply_point, config_to_dict, load_raw, sweep_points
from insr_hpc.errors import ConfigError, InsrError
from insr_hpc.run import RunSpec


@dataclass
class Plan:
    specs: list[RunSpec]
    configs: list  # validated Config per spec
    sweep_dir: str  # output.root/name: where every run of this submit lives

    @property
    def launch(self):
        return self.configs[0].launch


def plan_runs(config_path: str, overrides: Sequence[str] = ()) -> Plan:
    raw = load_raw(config_path, overrides)
    points = sweep_points(raw)
    specs, configs = [], []
    for point in points:
        try:
            cfg = build_config(apply_point(raw, point))
        except ConfigError as exc:
            where = f" (sweep point {point.run_id})" if point.overrides else ""
            raise ConfigError(exc.key, f"{str(exc)[len(exc.key) + 2:]}{where}") from None
        run_dir = os.path.abspath(os.path.join(cfg.output.root, cfg.name, point.run_id))
        specs.append(RunSpec(point.run_id, run_dir, config_to_dict(cfg), dict(point.overrides)))
        configs.append(cfg)
    from insr_hpc.launch import BACKENDS

    for cfg in configs:
        BACKENDS.get(cfg.launch.backend)
    roots = {os.path.abspath(os.path.join(c.output.root, c.name)) for c in configs}
    if len(roots) != 1:
        raise ConfigError("sweep", "output.root and name may not be swept (all runs share one sweep directory)")
    sweep_dir = roots.pop()
    check_writable(sweep_dir, "output.root")
    return Plan(specs, configs, sweep_dir)


def check_writable(path: str, key: str) -> None:
    """Fail unless ``path`` exists as a writable directory or could be created."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise InsrError(f"{key}: cannot create '{path}': '{probe}' is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InsrError(f"{key}: cannot create '{path}': '{probe}' is not writable")

"""Base layer: typed schema, loading and validation, sweep expansion."""

from insr_hpc.config.load import build_config, config_to_dict, config_to_yaml, load_config, load_raw
from insr_hpc.config.schema import Config
from insr_hpc.config.sweep import SweepPoint, apply_point, sweep_points

__all__ = [
    "Config",
    "SweepPoint",
    "apply_point",
    "build_config",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "load_raw",
    "sweep_points",
]

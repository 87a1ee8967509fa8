"""Sweep expansion: one raw config with a ``sweep`` section → many run configs.

``sweep.grid`` (key → list) is a Cartesian product; ``sweep.zip`` (key → lists of one
length) contributes rows taken together. Both may be written nested
(``time: {dt: [...]}``) or with dotted keys (``time.dt: [...]``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from insr_hpc.config.load import merge_dicts
from insr_hpc.errors import ConfigError


@dataclass(frozen=True)
class SweepPoint:
    index: int
    overrides: dict[str, Any]  # dotted key → value

    @property
    def run_id(self) -> str:
        if not self.overrides:
            return f"r{self.index:03d}"
        parts = [f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in self.overrides.items()]
        slug = re.sub(r"[^A-Za-z0-9_.=+-]", "", "_".join(parts))[:80]
        return f"r{self.index:03d}-{slug}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _flatten(tree: Mapping, prefix: str, out: dict[str, Any], where: str) -> None:
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(value, f"{full}.", out, where)
        elif isinstance(value, list | tuple):
            if not value:
                raise ConfigError(f"{where}.{full}", "expected a non-empty list of values")
            out[full] = list(value)
        else:
            raise ConfigError(f"{where}.{full}", f"expected a list of values, got {value!r}")


def sweep_points(raw: Mapping[str, Any]) -> list[SweepPoint]:
    sweep = raw.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep", f"expected a mapping with 'grid' and/or 'zip', got {sweep!r}")
    unknown = set(sweep) - {"grid", "zip"}
    if unknown:
        raise ConfigError(f"sweep.{sorted(unknown)[0]}", "unknown key (valid: grid, zip)")
    grid: dict[str, Any] = {}
    zipped: dict[str, Any] = {}
    _flatten(sweep.get("grid") or {}, "", grid, "sweep.grid")
    _flatten(sweep.get("zip") or {}, "", zipped, "sweep.zip")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise ConfigError("sweep.zip", f"all lists must have one length, got {detail}")
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError(f"sweep.zip.{sorted(both)[0]}", "key also appears in sweep.grid")
    zip_rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)] or [{}]
    grid_rows = [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]
    points = []
    for grid_row in grid_rows:
        for zip_row in zip_rows:
            points.append(SweepPoint(len(points), {**grid_row, **zip_row}))
    return points


def apply_point(raw: Mapping[str, Any], point: SweepPoint) -> dict[str, Any]:
    """The raw config of one sweep point: overrides applied, ``sweep`` removed."""
    base = {k: v for k, v in raw.items() if k != "sweep"}
    dotted = OmegaConf.to_container(
        OmegaConf.from_dotlist([f"{k}={_yaml_value(v)}" for k, v in point.overrides.items()])
    )
    return merge_dicts(base, dotted)


def _yaml_value(value: Any) -> str:
    import json

    return json.dumps(value)

"""Sweep expansion: one raw config with a ``sweep`` section → many run configs.

``sweep.grid`` (key → list) is a Cartesian product; ``sweep.zip`` (key → lists of one
length) contributes rows taken together. Both may be written nested
(``time: {dt: [...]}``) or with dotted keys (``time.dt: [...]``). ``sweep.labels`` (key →
list of names, one per value) names values in run ids; a whole block (a ``network``
mapping) is otherwise named by its tag (``model``, ``case`` or ``name``).
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from insr_hpc.config.load import merge_dicts
from insr_hpc.config.schema import SweepConfig
from insr_hpc.errors import ConfigError


@dataclass(frozen=True)
class SweepPoint:
    index: int
    overrides: dict[str, Any]  # dotted key → value
    labels: dict[str, str] | None = None  # dotted key → this value's name in the run id

    @functools.cached_property  # a frozen dataclass: computed once
    def run_id(self) -> str:
        if not self.overrides:
            return f"r{self.index:03d}"
        labels = self.labels or {}
        parts = [f"{key.rsplit('.', 1)[-1]}={labels.get(key) or _short(value)}" for key, value in self.overrides.items()]
        slug = re.sub(r"[^A-Za-z0-9_.=+-]", "", "_".join(parts))[:80]
        return f"r{self.index:03d}-{slug}"


def _short(value: Any) -> str:
    if isinstance(value, Mapping):  # a whole block: its registry tag
        for tag in ("model", "case", "name"):
            if tag in value:
                return str(value[tag])
        return "-".join(_short(v) for v in list(value.values())[:2])
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


DEFAULT_MAX_POINTS = SweepConfig.max_points  # unless the config sets sweep.max_points


def sweep_points(raw: Mapping[str, Any]) -> list[SweepPoint]:
    """The points of the sweep of ``raw``, in order (grid rows outer, zip rows inner).

    Their number is computed from the lengths of the lists first: more than
    ``sweep.max_points`` is refused before any point exists."""
    sweep = raw.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError("sweep", f"expected a mapping with 'grid' and/or 'zip', got {sweep!r}")
    unknown = set(sweep) - {"grid", "zip", "labels", "max_points"}
    if unknown:
        raise ConfigError(f"sweep.{sorted(map(str, unknown))[0]}", "unknown key (valid: grid, zip, labels, max_points)")
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
    _check_count(grid, zipped, sweep.get("max_points", DEFAULT_MAX_POINTS))
    labels: dict[str, Any] = {}
    _flatten(sweep.get("labels") or {}, "", labels, "sweep.labels")
    for key, names in labels.items():
        values = grid.get(key, zipped.get(key))
        if values is None:
            raise ConfigError(f"sweep.labels.{key}", "names no key of sweep.grid or sweep.zip")
        if len(names) != len(values):
            raise ConfigError(f"sweep.labels.{key}", f"expected {len(values)} names (one per value), got {len(names)}")

    # Rows as positions into the value lists: a value's label is the one at its position.
    n_zip = len(next(iter(zipped.values()))) if zipped else 1
    points = []
    for combo in itertools.product(*(range(len(v)) for v in grid.values())):
        grid_row = dict(zip(grid, combo, strict=True))
        for row in range(n_zip):
            where = {**grid_row, **dict.fromkeys(zipped, row)}
            values = {k: (grid[k] if k in grid else zipped[k])[i] for k, i in where.items()}
            names = {k: str(labels[k][i]) for k, i in where.items() if k in labels}
            points.append(SweepPoint(len(points), values, names or None))
    return points


def _check_count(grid: Mapping[str, list], zipped: Mapping[str, list], limit: Any) -> None:
    """Refuse a sweep of more than ``limit`` (``sweep.max_points``) points, naming its
    size, from the lengths of its lists alone."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError("sweep.max_points", f"expected a positive integer, got {limit!r}")
    factors = [str(len(v)) for v in grid.values()]
    if zipped:
        factors.append(f"{len(next(iter(zipped.values())))} zip rows")
    count = math.prod(len(v) for v in grid.values()) * (len(next(iter(zipped.values()))) if zipped else 1)
    if count > limit:
        raise ConfigError("sweep", f"{count} points ({' × '.join(factors)}), more than sweep.max_points = {limit}; "
                          "shrink the sweep or raise sweep.max_points")


def apply_point(raw: Mapping[str, Any], point: SweepPoint) -> dict[str, Any]:
    """The raw config of one sweep point: overrides applied, ``sweep`` removed.

    Each dotted key is set in turn, as ``OmegaConf.from_dotlist`` would (a mapping set
    onto a mapping merges into it), then the result is merged into the base config."""
    base = {k: v for k, v in raw.items() if k != "sweep"}
    dotted: dict[str, Any] = {}
    for key, value in point.overrides.items():
        set_dotted(dotted, key, value)
    return merge_dicts(base, dotted)


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``tree[a][b][c] = value`` for ``key = "a.b.c"``, creating the mappings between."""
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    value = copy.deepcopy(value) if isinstance(value, Mapping | list) else value
    if isinstance(value, Mapping) and isinstance(node.get(leaf), Mapping):
        node[leaf] = merge_dicts(node[leaf], value)
    else:
        node[leaf] = value

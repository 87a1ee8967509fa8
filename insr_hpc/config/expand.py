"""Typed, validated configs of every sweep point, without a full OmegaConf build per point.

A full build (:func:`~insr_hpc.config.load.build_config`: structured merge, conversion,
validation) costs tens of milliseconds; a 10 000-point sweep cannot pay it per point.
Points are grouped by what changes the *shape* of their config: the workload, the tag of
a tagged section (``network.model``, ``problem.case`` …) and whole blocks (a mapping as a
swept value). The first point of each group is built in full; every other point of the
group differs from it only at leaf keys, so it is that point's config with those leaves
replaced. Each distinct (field, value) is converted once by OmegaConf against its field
(same types, same conversions as a full build), each distinct changed sub-config (a
``time`` section with dt = 0.1) is made once and shared by the points that hold it, and
every patched config goes through the same :func:`~insr_hpc.config.load.check_config`
as a full build, skipping only sub-configs that passed it already.

Anything the patch cannot reproduce exactly (a key that is not a plain field, a value
OmegaConf rejects, an interpolation, a check that fails) falls back to the full build of
that point, so errors are exactly those of a full build; they name the sweep point.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from insr_hpc.config.load import (
    Catalog, build_config, check_config, drop_switched, has_renamed_keys, is_node, node_ids,
)
from insr_hpc.config.sweep import SweepPoint, apply_point
from insr_hpc.errors import ConfigError

_FAIL = object()  # "cannot patch this exactly": build the point in full


def expand_configs(
    raw: Mapping[str, Any], points: Sequence[SweepPoint], catalog: Catalog, incremental: bool = True,
    layers: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None, notes: list[str] | None = None,
) -> list[Any]:
    """The validated Config of every point, in order. ``incremental=False`` builds each in
    full (the reference the incremental path must equal).

    ``layers``: (the YAML file, the command-line overrides) that ``raw`` merges. Given,
    a point (or the command line) that switches a tagged section's class drops the
    file's keys the new class lacks (:func:`~insr_hpc.config.load.drop_switched`), and
    each distinct note saying so is appended to ``notes``."""
    keys = list(points[0].overrides) if points else []
    exact = (not incremental or _has_interpolation(raw)  # "${…}" may tie any key to a swept one
             or any(b.startswith(a + ".") for a in keys for b in keys)  # a block and a key inside it
             or has_renamed_keys(raw))  # an old key may clash with a swept new one: the full build says so
    reps: dict[tuple, tuple[SweepPoint, Any, set[int]]] = {}
    memo = _Memo()
    found: list[str] = [] if notes is None else notes
    configs = []
    for point in points:
        cfg = None
        shape = _shape(point, raw, catalog)
        if not exact and shape in reps:
            cfg = _patched(*reps[shape], point, catalog, memo)
        if cfg is None:
            cfg = _full(raw, point, catalog, layers, found)
            if shape not in reps:
                reps[shape] = (point, cfg, node_ids(cfg))  # kept alive: the ids stay its objects'
        configs.append(cfg)
    return configs


class _Memo:
    """What the points of one expansion share: converted values, OmegaConf templates and
    patched sub-configs (keyed by the id of the representative's sub-config they replace,
    which stays alive, and the changes under it)."""

    def __init__(self) -> None:
        self.converted: dict[tuple, Any] = {}
        self.templates: dict[type, Any] = {}
        self.nodes: dict[tuple, Any] = {}


def _full(raw: Mapping[str, Any], point: SweepPoint, catalog: Catalog,
          layers: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None, notes: list[str] | None = None) -> Any:
    data = apply_point(raw, point)
    try:
        if layers is not None:
            file_data, given = layers
            data, found = drop_switched(data, file_data, apply_point(given, point), catalog)
            if notes is not None:
                notes.extend(n for n in found if n not in notes)
        return build_config(data, catalog)
    except ConfigError as exc:
        where = f" (sweep point {point.run_id})" if point.overrides else ""
        message = str(exc)[len(exc.key) + 2 :] if exc.key else str(exc)
        raise ConfigError(exc.key, f"{message}{where}") from None


_SCALARS = frozenset((str, int, float, bool, type(None)))


def _canon(value: Any) -> Any:
    """A hashable stand-in for ``value``: equal exactly when the values are the same, of
    the same types, in the same order (1, 1.0 and True are three values here; so are 0.0
    and -0.0; a NaN equals a NaN)."""
    if type(value) in _SCALARS:
        return (type(value).__name__, repr(value))
    return json.dumps(value, default=repr)


def _shape(point: SweepPoint, raw: Mapping[str, Any], catalog: Catalog) -> tuple:
    """The overrides of ``point`` that select classes or replace whole blocks."""
    workload = point.overrides.get("workload", raw.get("workload", "pde"))
    try:
        tagged = catalog.tagged_sections(workload) if isinstance(workload, str) else {}
    except ConfigError:  # an unknown workload: the full build says so
        tagged = {}
    out = []
    for key, value in point.overrides.items():
        top, _, rest = key.partition(".")
        if isinstance(value, Mapping) or top == "workload" or (top in tagged and rest in ("", tagged[top][0])):
            out.append((key, _canon(value)))
    return tuple(out)


def _patched(rep_point: SweepPoint, rep_cfg: Any, checked: set[int], point: SweepPoint, catalog: Catalog,
             memo: _Memo) -> Any:
    """``rep_cfg`` with the leaves where ``point`` differs from ``rep_point`` replaced, and
    checked; None when that would not be exactly the full build of ``point``.

    Sub-configs off the changed paths are the representative's objects, and a changed
    sub-config is made once per distinct change and shared by the points that make it:
    ``checked`` holds the ids of those that passed :func:`check_config` (as part of the
    representative or of an earlier point), which it skips; the top level is always
    checked (a ``validate()`` there may look across sections)."""
    changes = []
    for key, value in point.overrides.items():
        if key in rep_point.overrides and _canon(rep_point.overrides[key]) == _canon(value):
            continue
        if isinstance(value, str) and "${" in value:
            return None
        changes.append((tuple(key.split(".")), value))
    cfg = _patch(rep_cfg, changes, memo)
    if cfg is _FAIL:
        return None
    try:
        check_config(cfg, catalog, checked=checked)
    except ConfigError:
        return None  # the full build raises it, with its exact wording
    for name in _field_names(type(cfg)):
        if is_node(value := getattr(cfg, name)):
            checked.add(id(value))  # it passed; memo.nodes keeps it alive
    return cfg


def _patch(obj: Any, changes: list[tuple[tuple[str, ...], Any]], memo: _Memo) -> Any:
    """A copy of dataclass ``obj`` with each (path, value) of ``changes`` set (values
    converted for their field); untouched branches are shared, changed sub-configs come
    from ``memo`` when another point made the same change."""
    if not is_node(obj):
        return _FAIL
    names = _field_names(type(obj))
    leaves: dict[str, Any] = {}
    below: dict[str, list] = {}
    for parts, value in changes:
        if parts[0] not in names:
            return _FAIL
        if len(parts) == 1:
            leaves[parts[0]] = value
        else:
            below.setdefault(parts[0], []).append((parts[1:], value))
    updates = {}
    for name, value in leaves.items():
        current = getattr(obj, name)
        if name in below or is_node(current) or isinstance(current, Mapping) or isinstance(value, Mapping):
            return _FAIL  # a mapping merges into what is there: leave it to the full build
        updates[name] = _convert(obj, name, value, memo)
    for name, sub in below.items():
        child = getattr(obj, name)
        key = (id(child), tuple((parts, _canon(value)) for parts, value in sub))
        if key not in memo.nodes:
            memo.nodes[key] = _patch(child, sub, memo)
        updates[name] = memo.nodes[key]
    if any(v is _FAIL for v in updates.values()):
        return _FAIL
    if hasattr(obj, "__dict__"):  # a shallow copy, as copy.copy, without its machinery
        out = object.__new__(type(obj))
        out.__dict__.update(obj.__dict__)
        out.__dict__.update(updates)
        return out
    out = copy.copy(obj)
    for name, value in updates.items():
        object.__setattr__(out, name, value)
    return out


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def _convert(owner: Any, name: str, value: Any, memo: _Memo) -> Any:
    """``value`` as OmegaConf converts it for field ``name`` of ``owner``'s class."""
    cls = type(owner)
    key = (cls, name, _canon(value))
    converted, templates = memo.converted, memo.templates
    if key not in converted:
        if cls not in templates:
            templates[cls] = OmegaConf.structured(owner)
        try:
            merged = OmegaConf.merge(templates[cls], {name: value})
            converted[key] = getattr(OmegaConf.to_object(merged), name)
        except OmegaConfBaseException:
            converted[key] = _FAIL
    result = converted[key]
    return copy.deepcopy(result) if isinstance(result, list) else result


def _has_interpolation(tree: Any) -> bool:
    """Whether any string in ``tree`` holds ``${``. Iterative, and each list or mapping
    object is looked at once: a tree that shares sub-trees (YAML aliases) costs what its
    distinct objects cost, not what it would cost written out."""
    seen: set[int] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "${" in node:
                return True
        elif isinstance(node, Mapping | list | tuple):
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, Mapping) else node)
    return False

"""Load a YAML config, apply ``key=value`` overrides, validate against the typed schema.

Every failure is an :class:`~insr_hpc.errors.InsrError` with a one-line message that
names the file or the dotted key and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from insr_hpc.config.schema import Config
from insr_hpc.errors import ConfigError, InsrError, did_you_mean


class Catalog(Protocol):
    """What the loader needs to know about registered implementations."""

    def config_class(self, workload: str) -> type: ...

    def tagged_sections(self, workload: str) -> Mapping[str, tuple[str, Any]]:
        """section → (tag key, Registry whose entries carry a ``Params`` dataclass)."""
        ...


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InsrError(f"config file '{path}' not found")
    if os.path.isdir(path):
        raise InsrError(f"config file '{path}' is a directory, expected a YAML file")
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InsrError(f"config file '{path}': YAML syntax error{where}: {problem}") from None
    except OSError as exc:
        raise InsrError(f"config file '{path}': cannot read ({exc.strerror})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InsrError(f"config file '{path}': expected a mapping of sections at top level")
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["time.dt=0.1", "network.width=32"]`` → nested dict (values parsed as YAML)."""
    for item in overrides:
        key = item.split("=", 1)[0]
        if "=" not in item or not key or key.startswith("."):
            raise InsrError(f"override '{item}': expected key=value, e.g. time.dt=0.1")
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as exc:
        raise InsrError(f"overrides: {str(exc).splitlines()[0]}") from None


def merge_dicts(base: dict, extra: Mapping) -> dict:
    """Recursive merge of plain dicts; ``extra`` wins. Returns a new dict."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_dicts(out[key], value)
        else:
            out[key] = value
    return out


def _check_keys(data: Any, cls: type, prefix: str) -> None:
    """Reject keys the dataclass does not have, naming the nearest valid key."""
    if not isinstance(data, Mapping):
        if data is not None:
            raise ConfigError(prefix.rstrip("."), f"expected a mapping, got {data!r}")
        return
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(
                f"{prefix}{key}",
                f"unknown key (valid: {', '.join(fields)}){did_you_mean(str(key), fields)}",
            )
        sub = _nested_dataclasses(cls).get(key)
        if sub is not None:
            _check_keys(value, sub, f"{prefix}{key}.")


@functools.cache
def _nested_dataclasses(cls: type) -> dict[str, type]:
    """Field name → dataclass type, for the fields of ``cls`` that are dataclasses."""
    hints = typing.get_type_hints(cls)
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint)}


def _validate_tree(obj: Any, prefix: str) -> None:
    if not dataclasses.is_dataclass(obj):
        return
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            key = f"{prefix}{exc.key}" if exc.key else prefix.rstrip(".")
            msg = str(exc)[len(exc.key) + 2 :] if exc.key else str(exc)
            raise ConfigError(key, msg) from None
    for f in dataclasses.fields(obj):
        _validate_tree(getattr(obj, f.name), f"{prefix}{f.name}.")


def build_config(data: Mapping[str, Any], catalog: Catalog) -> Any:
    """Validate a plain nested dict into a typed Config object."""
    data = dict(data)
    workload = data.get("workload", "pde")
    if not isinstance(workload, str):
        raise ConfigError("workload", f"expected a name, got {workload!r}")
    cls = catalog.config_class(workload)
    tagged = catalog.tagged_sections(workload)

    base = OmegaConf.structured(cls)
    # Give each tagged section the dataclass that its tag selects.
    for section, (tag, registry) in tagged.items():
        sub = data.get(section) or {}
        if not isinstance(sub, Mapping):
            raise ConfigError(section, f"expected a mapping, got {sub!r}")
        default_tag = getattr(registry, "default", None)
        name = sub.get(tag, default_tag)
        if name is None:
            raise ConfigError(f"{section}.{tag}", f"required (one of: {', '.join(registry.names())})")
        if not isinstance(name, str):
            raise ConfigError(f"{section}.{tag}", f"expected a name, got {name!r}")
        params_cls = registry.get(name).Params
        _check_keys(sub, params_cls, f"{section}.")
        OmegaConf.update(base, section, OmegaConf.structured(params_cls(**{tag: name})), merge=False)

    plain = {k: v for k, v in data.items() if k not in tagged}
    _check_keys(plain, cls, "")
    try:
        merged = OmegaConf.merge(base, OmegaConf.create(data))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        first = str(exc).splitlines()[0]
        raise ConfigError(str(key), _explain_type_error(first)) from None
    _validate_tree(obj, "")
    return obj


def _explain_type_error(message: str) -> str:
    # OmegaConf: "Value 'abc' of type 'str' could not be converted to Integer"
    if "could not be converted to" in message:
        target = message.rsplit("converted to", 1)[1].strip()
        value = message.split("of type", 1)[0].replace("Value", "").strip()
        return f"expected {target.lower()}, got {value}"
    return message


def load_config(path: str | os.PathLike, overrides: Sequence[str], catalog: Catalog) -> Any:
    """Read ``path``, apply overrides, return a validated Config object."""
    data = load_raw(path, overrides)
    return build_config(data, catalog)


def load_raw(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML file merged with overrides, as a plain dict, before validation."""
    return merge_dicts(read_yaml(path), parse_overrides(overrides))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A validated Config back to plain data (YAML/JSON-safe)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)


def config_to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


__all__ = [
    "Catalog",
    "Config",
    "build_config",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "load_raw",
    "merge_dicts",
    "parse_overrides",
    "read_yaml",
]

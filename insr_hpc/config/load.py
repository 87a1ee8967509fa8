"""Load a YAML config, apply ``key=value`` overrides, validate against the typed schema.

Every failure is an :class:`~insr_hpc.errors.InsrError` with a one-line message that
names the file or the dotted key and what was expected.
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import math
import os
import re
import sys
import typing
from collections.abc import Container, Mapping, Sequence
from typing import Any, Protocol

import yaml
from omegaconf import OmegaConf
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.resolver import Resolver

try:
    from yaml.cyaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    CParser = None
from omegaconf.errors import OmegaConfBaseException

from insr_hpc.config.schema import ALLOW_INF, KEYS_OF, Config
from insr_hpc.errors import ConfigError, InsrError, did_you_mean


class Catalog(Protocol):
    """What the loader needs to know about registered implementations."""

    def config_class(self, workload: str) -> type: ...

    def tagged_sections(self, workload: str) -> Mapping[str, tuple[str, Any]]:
        """section → (tag key, Registry whose ``params(name)`` is the entry's dataclass)."""
        ...


# Bounds on what a config may make this process do before anything is validated
# (README.md "Configuration", "Limits"): a config file is at most
# MAX_BYTES_ENV bytes (default 1 MiB); the data it (or an override) describes is nested at
# most MAX_DEPTH levels and holds at most one node (scalar, list, mapping) per
# NODE_BYTES bytes of that limit, counted after aliases expand.
MAX_BYTES_ENV = "INSR_HPC_MAX_CONFIG_BYTES"
DEFAULT_MAX_BYTES = 1 << 20
MAX_DEPTH = 64
NODE_BYTES = 10

_FOREIGN_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)
# What YAML accepts in a stream (its c-printable set); anything else is refused up front,
# with its byte offset, before the parser sees it.
_NOT_YAML_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def max_config_bytes() -> int:
    """The size limit of a config file: ``$INSR_HPC_MAX_CONFIG_BYTES``, else 1 MiB.
    Only the environment can raise it (a key in the file cannot raise its own limit)."""
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise InsrError(f"{MAX_BYTES_ENV}: expected a positive number of bytes, got '{text[:40]}'")
    return value


class _Refused(Exception):
    """A bound of :class:`_BoundedComposer` was hit at ``mark``."""

    def __init__(self, message: str, mark: Any = None):
        super().__init__(message)
        self.mark = mark


class _BoundedComposer(Composer):
    """PyYAML's composer with bounds, checked while the node graph is built, before any
    Python object exists: nesting depth (:data:`MAX_DEPTH`, so that nothing downstream
    recurses deeper) and the number of nodes with every alias expanded (a "billion
    laughs" document is ten small lines). An alias inside its own anchor (a recursive
    structure) is refused too."""

    max_nodes = DEFAULT_MAX_BYTES // NODE_BYTES

    def compose_document(self) -> Any:
        self._depth, self._nodes, self._sizes = 0, 0, {}
        return super().compose_document()

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if self.check_event(AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # else PyYAML's "undefined alias"
                size = self._sizes.get(id(target))
                if size is None:
                    raise _Refused(f"alias *{event.anchor} lies inside its own anchor &{event.anchor} "
                                   "(a recursive structure)", event.start_mark)
                self._nodes += size
                if self._nodes > self.max_nodes:
                    raise _Refused(f"aliases expand too far: more than {self.max_nodes} nodes with *{event.anchor} "
                                   "expanded", event.start_mark)
            return super().compose_node(parent, index)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        if self._nodes >= self.max_nodes:
            raise _Refused(f"more than {self.max_nodes} nodes (values, lists, mappings)", event.start_mark)
        before = self._nodes
        self._nodes += 1
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = self._nodes - before  # what an alias to it expands to
        return node


if CParser is not None:  # libyaml scans and parses; composing (bounded) and constructing stay in Python

    class _Loader(_BoundedComposer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML without libyaml

    class _Loader(_BoundedComposer, yaml.SafeLoader):  # type: ignore[no-redef]
        pass


def _too_deep(exc: yaml.YAMLError) -> bool:
    """libyaml's own nesting bound, which its scanner's look-ahead can reach before ours."""
    return "maximum nesting depth" in str(getattr(exc, "problem", "") or "")


def _loader(text: str, max_nodes: int) -> Any:
    loader = _Loader(text)
    loader.max_nodes = max_nodes
    return loader


def _decode(raw: bytes, path: str) -> str:
    """``raw`` as strict UTF-8 (a leading UTF-8 byte order mark dropped), holding only
    characters YAML accepts; else an error with the byte offset."""
    for bom, name in _FOREIGN_BOMS:
        if raw.startswith(bom):
            raise InsrError(f"config file '{path}': starts with a {name} byte order mark (offset 0); "
                            "save it as UTF-8")
    skip = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        text = raw[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = skip + exc.start
        line = raw.count(b"\n", 0, at) + 1
        raise InsrError(f"config file '{path}': not UTF-8: byte 0x{raw[at]:02x} at offset {at} "
                        f"(line {line}); save it as UTF-8") from None
    bad = _NOT_YAML_PRINTABLE.search(text)
    if bad is not None:
        at = skip + len(text[: bad.start()].encode("utf-8"))
        line = text.count("\n", 0, bad.start()) + 1
        hint = " (UTF-16 text? save it as UTF-8)" if bad.group() == "\0" else ""
        raise InsrError(f"config file '{path}': control character U+{ord(bad.group()):04X} at offset {at} "
                        f"(line {line}){hint}")
    return text


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in YAML file ``path``, read within bounds: at most
    :func:`max_config_bytes` bytes, strict UTF-8, nested at most :data:`MAX_DEPTH`
    levels, at most one node per :data:`NODE_BYTES` bytes of the limit with aliases
    expanded. Each refusal is one :class:`InsrError` naming the file, raised before
    anything is built from it."""
    path = os.fspath(path)
    limit = max_config_bytes()
    if not os.path.exists(path):
        raise InsrError(f"config file '{path}' not found")
    if os.path.isdir(path):
        raise InsrError(f"config file '{path}' is a directory, expected a YAML file")
    too_big = f"config file '{path}' is larger than {limit} bytes (the limit; {MAX_BYTES_ENV}=BYTES raises it)"
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise InsrError(too_big.replace("is larger than", f"is {size} bytes, larger than", 1))
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)  # bounded also where stat cannot tell (a pipe, a device)
    except OSError as exc:
        raise InsrError(f"config file '{path}': cannot read ({exc.strerror})") from None
    if len(raw) > limit:
        raise InsrError(too_big)
    text = _decode(raw, path)
    loader = _loader(text, max(limit // NODE_BYTES, 1))
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        where = f" at line {exc.mark.line + 1}, column {exc.mark.column + 1}" if exc.mark else ""
        raise InsrError(f"config file '{path}': {exc}{where}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        if _too_deep(exc):
            raise InsrError(f"config file '{path}': nested deeper than {MAX_DEPTH} levels{where}") from None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InsrError(f"config file '{path}': YAML syntax error{where}: {problem}") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InsrError(f"config file '{path}': {str(exc).split(';')[0]}") from None
    finally:
        loader.dispose()
    if data is None or data == {}:  # an empty file (or only comments) would silently run the defaults
        raise InsrError(f"config file '{path}' is empty: expected a mapping of sections (name, problem, …)")
    if not isinstance(data, dict):
        raise InsrError(f"config file '{path}': expected a mapping of sections at top level")
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["time.dt=0.1", "network.width=32"]`` → nested dict (values parsed as YAML).

    Bounded as a config file is: each override at most :func:`max_config_bytes` bytes,
    its key and value nested at most :data:`MAX_DEPTH` levels, its value's nodes counted
    with aliases expanded."""
    limit = max_config_bytes()
    for item in overrides:
        _check_encoding(item)
        key = item.split("=", 1)[0]
        if "=" not in item or not key or key.startswith("."):
            raise InsrError(f"override '{item[:80]}': expected key=value, e.g. time.dt=0.1")
        if not _KEY.fullmatch(key):
            raise InsrError(f"override '{item[:80]}': malformed key '{key[:80]}' (expected dotted names, "
                            "e.g. time.dt=0.1 or sweep.grid.seed=[0,1])")
        _check_override(item, key, item.split("=", 1)[1], limit)
    try:
        return OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except (OmegaConfBaseException, yaml.YAMLError, ValueError) as exc:
        raise _override_error(overrides, exc) from None


# A key of an override: dotted names, each optionally indexed (``a.b[0]``); a name holds
# no brackets, braces, '=' or whitespace (an unbalanced ``a[`` or a stray ``a.=1`` is refused).
_KEY = re.compile(r"[^.\[\]{}=\s]+(\[\d+\])*(\.[^.\[\]{}=\s]+(\[\d+\])*)*")


def _check_encoding(item: str) -> None:
    """Refuse an override holding bytes that are not UTF-8 (they reach ``argv`` as lone
    surrogates, ``os.fsdecode``), naming the first one and its offset."""
    bad = _SURROGATE.search(item)
    if bad is None:
        return
    raw = item.encode("utf-8", "surrogateescape") if "\udc80" <= bad.group() <= "\udcff" else None
    at = len(item[: bad.start()].encode("utf-8", "surrogatepass"))
    shown = item.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if raw is not None \
        else item.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    what = f"byte 0x{raw[at]:02x}" if raw is not None else f"lone surrogate U+{ord(bad.group()):04X}"
    raise InsrError(f"override '{shown[:80]}': not UTF-8: {what} at offset {at}")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _override_error(overrides: Sequence[str], exc: Exception) -> InsrError:
    """One line for an override OmegaConf could not read: the first override that fails
    alone, named, with the parser's problem (else the error as it came)."""
    def line(err: Exception) -> str:
        if isinstance(err, ValueError) and not isinstance(err, OmegaConfBaseException | yaml.YAMLError):
            return str(err).split(";")[0]  # e.g. an integer of more digits than Python converts
        cause = err if isinstance(err, yaml.YAMLError) else err.__cause__ or err.__context__
        if isinstance(cause, yaml.MarkedYAMLError) and cause.problem:
            context = f" ({cause.context})" if cause.context else ""
            return f"not a valid YAML value: {cause.problem}{context}"
        return str(err).splitlines()[0] if str(err) else type(err).__name__

    for item in overrides:
        try:
            OmegaConf.from_dotlist([item])
        except (OmegaConfBaseException, yaml.YAMLError, ValueError) as one:
            key = item.split("=", 1)[0]
            return InsrError(f"override '{key if len(key) <= 80 else key[:60] + '…'}': {line(one)}")
    return InsrError(f"overrides: {line(exc)}")


def _check_override(item: str, key: str, value: str, limit: int) -> None:
    name = key if len(key) <= 80 else f"{key[:60]}…"
    size = len(item.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InsrError(f"override '{name}': {size} bytes, larger than {limit} (the limit; "
                        f"{MAX_BYTES_ENV}=BYTES raises it)")
    if key.count(".") + 1 > MAX_DEPTH:
        raise InsrError(f"override '{name}': key nested deeper than {MAX_DEPTH} levels")
    loader = _loader(value, max(limit // NODE_BYTES, 1))
    try:
        loader.get_single_node()  # composed only: OmegaConf parses the value itself
    except _Refused as exc:
        raise InsrError(f"override '{name}': value {exc}") from None
    except yaml.YAMLError as exc:
        if _too_deep(exc):
            raise InsrError(f"override '{name}': value nested deeper than {MAX_DEPTH} levels") from None
        # else not plain YAML: OmegaConf's grammar decides
    finally:
        loader.dispose()


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


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """(name, metadata) of every field of dataclass ``cls`` (dataclasses.fields, cached)."""
    return tuple((f.name, f.metadata) for f in dataclasses.fields(cls))


_NODE_TYPES: dict[type, bool] = {}
_SCALARS = frozenset((str, int, float, bool, type(None)))


def is_node(obj: Any) -> bool:
    """Whether ``obj`` is a dataclass instance (a sub-config); cached per type."""
    kind = type(obj)
    known = _NODE_TYPES.get(kind)
    if known is None:
        known = _NODE_TYPES[kind] = hasattr(kind, "__dataclass_fields__") and not isinstance(obj, type)
    return known


def _validate_tree(obj: Any, prefix: str, skip: Container[int]) -> None:
    """``validate()`` of ``obj`` and of every sub-config under it whose id is not in ``skip``."""
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError as exc:
            key = f"{prefix}{exc.key}" if exc.key else prefix.rstrip(".")
            msg = str(exc)[len(exc.key) + 2 :] if exc.key else str(exc)
            raise ConfigError(key, msg) from None
    for name, _ in _fields(type(obj)):
        value = getattr(obj, name)
        if is_node(value) and id(value) not in skip:
            _validate_tree(value, f"{prefix}{name}.", skip)


def _check_node(obj: Any, key: str, names: Mapping[str, Any], skip: Container[int]) -> None:
    """Generic checks of every value of a typed config: numbers are finite (a field whose
    metadata has ``allow_inf`` may be ±inf, never NaN) and the keys of a map whose field
    metadata names a tagged section (``keys_of="network"``) are names of its registry.
    Sub-configs whose id is in ``skip`` are not visited."""
    for name, meta in _fields(type(obj)):
        value = getattr(obj, name)
        kind = type(value)
        if kind in _SCALARS:
            if kind is float and not math.isfinite(value) and (math.isnan(value) or not meta.get(ALLOW_INF)):
                raise ConfigError(f"{key}{name}", f"must be a finite number, got {value}")
        elif is_node(value):
            if id(value) not in skip:
                _check_node(value, f"{key}{name}.", names, skip)
        else:
            section = meta.get(KEYS_OF)
            if section is not None and isinstance(value, Mapping):
                _check_names(value, f"{key}{name}", names[section][1])
            _check_values(value, f"{key}{name}", names, skip, bool(meta.get(ALLOW_INF)))


def _check_values(obj: Any, key: str, names: Mapping[str, Any], skip: Container[int], allow_inf: bool) -> None:
    """:func:`_check_node` for a value inside a map or list."""
    if isinstance(obj, float):
        if math.isnan(obj) or (math.isinf(obj) and not allow_inf):
            raise ConfigError(key, f"must be a finite number, got {obj}")
    elif is_node(obj):
        if id(obj) not in skip:
            _check_node(obj, f"{key}.", names, skip)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _check_values(v, f"{key}.{k}", names, skip, allow_inf)
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            _check_values(v, f"{key}[{i}]", names, skip, allow_inf)


def _check_names(mapping: Mapping, key: str, registry: Any) -> None:
    for name in mapping:
        if name not in registry:
            try:
                registry.get(name)
            except ConfigError as exc:  # its message lists the known names and the closest
                raise ConfigError(f"{key}.{name}", str(exc)[len(exc.key) + 2 :]) from None


def check_config(obj: Any, catalog: Catalog, checked: Container[int] = ()) -> None:
    """Every check of a typed config beyond its types: each dataclass's ``validate()``,
    finite numbers, registry names used as map keys. Shared by :func:`build_config` and
    the incremental sweep expansion, so that both refuse exactly the same configs.
    ``checked``: ids of sub-configs (dataclass objects) that passed already, skipped."""
    names = catalog.tagged_sections(obj.workload)
    _check_node(obj, "", names, checked)  # first: validate() would misread a NaN
    _validate_tree(obj, "", checked)


def node_ids(obj: Any) -> set[int]:
    """Ids of ``obj`` and every dataclass object under it (for ``check_config(checked=…)``)."""
    out = {id(obj)}
    for name, _ in _fields(type(obj)):
        value = getattr(obj, name)
        if is_node(value):
            out |= node_ids(value)
    return out


def build_config(data: Mapping[str, Any], catalog: Catalog) -> Any:
    """Validate a plain nested dict into a typed Config object."""
    obj = typed_config(data, catalog)
    check_config(obj, catalog)
    return obj


def typed_config(data: Mapping[str, Any], catalog: Catalog) -> Any:
    """A plain nested dict as a typed Config object: keys and types checked, values
    converted (OmegaConf), not yet validated (see :func:`check_config`). Old names of
    renamed keys are read as the new ones (:func:`rename_keys`; the note is
    :func:`drop_switched`'s)."""
    data = dict(rename_keys(data)[0])
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
        params_cls = registry.params(name)
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
    return obj


def _explain_type_error(message: str) -> str:
    # OmegaConf: "Value 'abc' of type 'str' could not be converted to Integer"
    if "could not be converted to" in message:
        target = message.rsplit("converted to", 1)[1].strip()
        value = message.split("of type", 1)[0].replace("Value", "").strip()
        return f"expected {target.lower()}, got {value}"
    return message


def load_config(
    path: str | os.PathLike, overrides: Sequence[str], catalog: Catalog, notes: list[str] | None = None
) -> Any:
    """Read ``path``, apply overrides, return a validated Config object.

    An override that switches a tagged section's class drops the file's keys of that
    section the new class lacks (:func:`drop_switched`); the notes saying so are appended
    to ``notes``, or printed on stderr when it is None."""
    file_data, given = read_layers(path, overrides)
    data, found = drop_switched(merge_dicts(file_data, given), file_data, given, catalog)
    cfg = build_config(data, catalog)
    if notes is None:
        announce(found)
    else:
        notes.extend(n for n in found if n not in notes)
    return cfg


def read_layers(path: str | os.PathLike, overrides: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The YAML file and the overrides (nested), each as a plain dict, kept apart."""
    return read_yaml(path), parse_overrides(overrides)


def load_raw(path: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The YAML file merged with overrides, as a plain dict, before validation."""
    return merge_dicts(*read_layers(path, overrides))


# Keys that were renamed: old dotted key → the key that holds its meaning now. A file, an
# override or a sweep may still give the old key: it is read as the new one, with a note.
RENAMED = {
    "launch.slurm.nodes": "launch.ddp.nodes",
    "launch.slurm.tasks_per_node": "launch.ddp.nproc_per_node",
}


def rename_keys(data: Mapping[str, Any], resolved: bool = False) -> tuple[Mapping[str, Any], list[str]]:
    """``data`` with each old key of :data:`RENAMED` moved to its new key (``data``
    itself when it has none; else copies along the changed paths), and the note saying
    so (none or one). The old and the new key both given with different values is a
    ConfigError naming both. ``resolved``: ``data`` is a resolved config written before
    the rename (a RunSpec of an older version, which holds every key): there the larger
    value wins, as it did then."""
    found: list[tuple[str, str]] = []
    out: Any = data
    for old, new in RENAMED.items():
        missing = object()
        value = _get_dotted(out, old, missing)
        if value is missing:
            continue
        current = _get_dotted(out, new, missing)
        if current is not missing and current != value:
            if not resolved:
                raise ConfigError(old, f"is the old name of {new}, which is set to {current!r}, not {value!r}; "
                                  f"give only {new}")
            try:
                value = max(value, current)
            except TypeError:
                value = current
        out = _with_dotted(_without_dotted(out, old), new, value)
        found.append((old, new))
    if not found or resolved:
        return out, []
    olds, news = ", ".join(o for o, _ in found), ", ".join(n for _, n in found)
    verb, those = ("are", "those") if len(found) > 1 else ("is", "that")
    return out, [f"{olds} {verb} deprecated, read as {news}: write {those} instead"]


def has_renamed_keys(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` gives any old key of :data:`RENAMED`."""
    missing = object()
    return any(_get_dotted(data, old, missing) is not missing for old in RENAMED)


def _get_dotted(tree: Any, key: str, default: Any) -> Any:
    for part in key.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return default
        tree = tree[part]
    return tree


def _with_dotted(tree: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``tree``, copied along ``key`` only, with ``key`` set to ``value``."""
    head, _, rest = key.partition(".")
    out = dict(tree)
    if rest:
        child = out.get(head)
        out[head] = _with_dotted(child if isinstance(child, Mapping) else {}, rest, value)
    else:
        out[head] = value
    return out


def _without_dotted(tree: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A copy of ``tree``, copied along ``key`` only, without ``key`` (which it has)."""
    head, _, rest = key.partition(".")
    out = dict(tree)
    if rest:
        out[head] = _without_dotted(out[head], rest)
    else:
        del out[head]
    return out


def drop_switched(
    data: Mapping[str, Any], file_data: Mapping[str, Any], explicit: Mapping[str, Any], catalog: Catalog
) -> tuple[Mapping[str, Any], list[str]]:
    """Switching a tagged section's class starts it from the new class's defaults, as a
    Hydra config group would.

    ``data`` is the merged config (the file, then ``explicit``: what the command line and
    a sweep point set). In every tagged section whose tag there (``optim.name``) differs
    from the file's (or, where the file names none, from the registry's default), the
    keys that came from the file alone and that the new class's ``Params`` lacks are
    removed. Keys set explicitly are never removed: an unknown one stays an error of
    :func:`typed_config`, and so does every key when the tag is unchanged. Returns the
    config (``data`` itself when nothing was removed) and one note per section that lost
    keys, naming them.

    Old names of renamed keys (:data:`RENAMED`) are read as the new ones first, with a
    note (:func:`rename_keys`)."""
    data, notes = rename_keys(data)
    workload = data.get("workload", "pde")
    try:
        tagged = catalog.tagged_sections(workload) if isinstance(workload, str) else {}
    except ConfigError:  # an unknown workload: typed_config says so
        return data, notes
    out = data
    for section, (tag, registry) in tagged.items():
        mine, theirs = data.get(section), file_data.get(section)
        if not isinstance(mine, Mapping) or not isinstance(theirs, Mapping):
            continue
        default = getattr(registry, "default", None)
        old, new = theirs.get(tag, default), mine.get(tag, default)
        if old is None or new == old or not isinstance(new, str) or new not in registry:
            continue  # unchanged, or an unknown name: typed_config reports it
        try:
            params = registry.params(new)
        except AttributeError:  # an entry registered directly without Params
            params = None
        if params is None or not dataclasses.is_dataclass(params):
            continue
        given = explicit.get(section)
        given = given if isinstance(given, Mapping) else {}
        fields = {name for name, _ in _fields(params)}
        dropped = [k for k in theirs if k not in given and k in mine and k not in fields]
        if dropped:
            out = dict(out) if out is data else out
            out[section] = {k: v for k, v in mine.items() if k not in dropped}
            keys = ", ".join(sorted(map(str, dropped)))
            notes.append(f"{section}.{tag}={new}: dropped the file's {section} keys it does not take: {keys}")
    return out, notes


def announce(notes: Sequence[str]) -> None:
    """Print each note on stderr as ``insr-hpc: note: …``."""
    for note in notes:
        print(f"insr-hpc: note: {note}", file=sys.stderr)


def config_to_dict(cfg: Any, shared: dict[int, dict] | None = None) -> dict[str, Any]:
    """A validated Config back to plain data (YAML/JSON-safe): what
    ``OmegaConf.to_container(OmegaConf.structured(cfg))`` gives, without its cost.

    ``shared``: one dict over many configs that share sub-config objects (an expanded
    sweep): each sub-config is converted once and its dict is shared by every result that
    holds it, so treat the results as read-only. The configs must stay alive meanwhile
    (the dict is keyed by object id)."""
    return _plain(cfg, shared)


def _plain(value: Any, shared: dict[int, dict] | None = None) -> Any:
    if type(value) in _SCALARS:
        return value
    if is_node(value):
        if shared is not None and id(value) in shared:
            return shared[id(value)]
        out = {name: _plain(getattr(value, name), shared) for name, _ in _fields(type(value))}
        if shared is not None:
            shared[id(value)] = out
        return out
    if isinstance(value, Mapping):
        return {k: _plain(v, shared) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, shared) for v in value]
    return value


def config_to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


__all__ = [
    "Catalog",
    "Config",
    "build_config",
    "check_config",
    "config_to_dict",
    "config_to_yaml",
    "drop_switched",
    "load_config",
    "load_raw",
    "merge_dicts",
    "parse_overrides",
    "read_layers",
    "read_yaml",
    "typed_config",
]

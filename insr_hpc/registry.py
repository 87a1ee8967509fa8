"""Name → implementation registries (cases, integrators, models, backends, workloads).

An entry is either *declared* or *registered*:

* ``REGISTRY.declare(name, impl="package.module:Class", params=Params, **capabilities)``
  names the implementation by its import path, with the dataclass of its config section
  (``params``) and its capabilities. Everything the config loader, ``plan`` and the CLI
  ask of an entry (its name, capabilities, parameter schema) is answered from the
  declaration; the implementation module (torch, numerics) is imported on the first
  :meth:`Registry.get`. The built-in entries are declared next to their registry.
* ``@REGISTRY.register(name, **capabilities)`` makes the decorated object the entry
  (code that registers directly: a test, a plugin). On a declared name the decorator
  binds the declared implementation when its module is imported (the same object the
  declaration names; capabilities, if given, must equal the declared ones).

Asking for an unknown name lists the known ones and the closest match.

An entry may declare *capabilities*, e.g. ``MODELS.declare("mmgn", ..., latent=True)``:
what callers need to know about it without building it (``MODELS.has("mmgn", "latent")``).
A registry names the capabilities its entries may declare (``Registry(...,
capabilities=("latent", ...))``); declaring or asking for another one is a programming
error (ValueError), so a misspelt capability cannot silently read as absent. An
undeclared capability is False.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from insr_hpc.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str, capabilities: Iterable[str] = ()):
        self.kind = kind  # e.g. "PDE case"
        self.key = key  # the config key that selects an entry, e.g. "problem.case"
        self.known_capabilities: tuple[str, ...] = tuple(capabilities)
        self._entries: dict[str, T] = {}  # loaded implementations
        self._impls: dict[str, str] = {}  # declared: name → "module:attribute"
        self._params: dict[str, type] = {}  # declared: name → its config dataclass
        self._capabilities: dict[str, Mapping[str, Any]] = {}

    def _check_capability(self, cap: str) -> None:
        if cap not in self.known_capabilities:
            known = ", ".join(self.known_capabilities) or "none"
            raise ValueError(f"{self.kind} capability '{cap}' is not one of this registry's ({known})")

    def declare(self, name: str, impl: str, params: type | None = None, **capabilities: Any) -> None:
        """Entry ``name`` is ``impl`` (``"package.module:Attribute"``), imported on the
        first :meth:`get`; ``params``: the dataclass of its config section (what
        :meth:`params` answers without importing ``impl``)."""
        for cap in capabilities:
            self._check_capability(cap)
        if name in self:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        module, sep, attr = impl.partition(":")
        if not sep or not module or not attr:
            raise ValueError(f"{self.kind} '{name}': impl must be 'package.module:Attribute', got {impl!r}")
        self._impls[name] = impl
        if params is not None:
            self._params[name] = params
        self._capabilities[name] = MappingProxyType(dict(capabilities))

    def register(self, name: str, **capabilities: Any) -> Callable[[T], T]:
        """Decorator: ``obj`` becomes the entry ``name``, with ``capabilities`` (on a
        declared name: binds the declared implementation)."""
        for cap in capabilities:
            self._check_capability(cap)

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            declared = self._impls.get(name)
            if declared is not None:
                here = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"
                if here != declared:
                    raise ValueError(f"{self.kind} '{name}' registered twice (declared as {declared}, "
                                     f"registered as {here})")
                if capabilities and dict(capabilities) != dict(self._capabilities[name]):
                    raise ValueError(f"{self.kind} '{name}' registered with capabilities {capabilities}, "
                                     f"declared with {dict(self._capabilities[name])}")
            else:
                self._capabilities[name] = MappingProxyType(dict(capabilities))
            self._entries[name] = obj
            return obj

        return decorate

    def _unknown(self, name: str) -> ConfigError:
        known = ", ".join(self.names())
        return ConfigError(
            self.key,
            f"unknown {self.kind} '{name}' (known: {known}){did_you_mean(name, self.names())}",
        )

    def get(self, name: str) -> T:
        """The implementation of ``name`` (a declared one is imported now)."""
        try:
            return self._entries[name]
        except KeyError:
            pass
        impl = self._impls.get(name)
        if impl is None:
            raise self._unknown(name) from None
        module, _, attr = impl.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        # the module's own @register bound it already, or it has no decorator
        return self._entries.setdefault(name, obj)

    def params(self, name: str) -> type:
        """The config dataclass of entry ``name``: the declared one (nothing imported),
        else the implementation's ``Params`` (unknown name: the ConfigError of :meth:`get`)."""
        if name in self._params:
            return self._params[name]
        return self.get(name).Params

    def loaded(self, name: str) -> bool:
        """Whether ``name``'s implementation has been imported (or registered directly)."""
        return name in self._entries

    def capabilities(self, name: str) -> Mapping[str, Any]:
        """The capabilities entry ``name`` declared (read-only; unknown name: the
        ConfigError of :meth:`get`)."""
        if name not in self:
            raise self._unknown(name)
        return self._capabilities[name]

    def has(self, name: str, cap: str) -> bool:
        """Whether entry ``name`` declared capability ``cap`` (truthy)."""
        self._check_capability(cap)
        return bool(self.capabilities(name).get(cap, False))

    def having(self, cap: str) -> list[str]:
        """The names whose entries declared ``cap``, sorted."""
        self._check_capability(cap)
        return [n for n in self.names() if self._capabilities[n].get(cap, False)]

    def names(self) -> list[str]:
        return sorted({*self._entries, *self._impls})

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._impls

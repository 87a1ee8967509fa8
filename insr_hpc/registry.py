"""Name → implementation registries (cases, integrators, models, backends).

Adding an implementation is adding one module that calls ``REGISTRY.register``;
asking for an unknown name lists the known ones and the closest match.

An entry may declare *capabilities* at registration, e.g.
``@MODELS.register("mmgn", latent=True)``: what callers need to know about it without
building it (``MODELS.has("mmgn", "latent")``). A registry names the capabilities its
entries may declare (``Registry(..., capabilities=("latent", ...))``); declaring or
asking for another one is a programming error (ValueError), so a misspelt capability
cannot silently read as absent. An undeclared capability is False.
"""

from __future__ import annotations

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
        self._entries: dict[str, T] = {}
        self._capabilities: dict[str, Mapping[str, Any]] = {}

    def _check_capability(self, cap: str) -> None:
        if cap not in self.known_capabilities:
            known = ", ".join(self.known_capabilities) or "none"
            raise ValueError(f"{self.kind} capability '{cap}' is not one of this registry's ({known})")

    def register(self, name: str, **capabilities: Any) -> Callable[[T], T]:
        """Decorator: ``obj`` becomes the entry ``name``, with ``capabilities``."""
        for cap in capabilities:
            self._check_capability(cap)

        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = obj
            self._capabilities[name] = MappingProxyType(dict(capabilities))
            return obj

        return decorate

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries))
            raise ConfigError(
                self.key,
                f"unknown {self.kind} '{name}' (known: {known}){did_you_mean(name, self._entries)}",
            ) from None

    def capabilities(self, name: str) -> Mapping[str, Any]:
        """The capabilities entry ``name`` declared (read-only; unknown name: the
        ConfigError of :meth:`get`)."""
        self.get(name)
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
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

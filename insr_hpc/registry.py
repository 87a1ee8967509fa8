"""Name → implementation registries (cases, integrators, models, backends).

Adding an implementation is adding one module that calls ``REGISTRY.register``;
asking for an unknown name lists the known ones and the closest match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from insr_hpc.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str):
        self.kind = kind  # e.g. "PDE case"
        self.key = key  # the config key that selects an entry, e.g. "problem.case"
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._entries[name] = obj
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

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

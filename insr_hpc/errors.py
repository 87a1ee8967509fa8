"""User-facing errors: each one becomes a single ``insr-hpc: error:`` line and exit 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class InsrError(Exception):
    """Bad input from the user (config, paths, names). The CLI prints it on one line."""


class ConfigError(InsrError):
    """A config key holds something unusable. ``key`` is the dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class DivergenceError(RuntimeError):
    """A run diverged (non-finite loss or parameters, an error past its guard bound).
    The message names the step (or epoch) and the sub-problem; the run ends ``failed``."""


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate nearest to ``name`` by edit similarity, or None if none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A hint to append to an error: ``; did you mean 'x'?`` or the empty string."""
    best = closest(name, candidates)
    return f"; did you mean '{best}'?" if best else ""

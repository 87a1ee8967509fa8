"""User-facing errors: each one becomes a single ``insr-hpc: error:`` line and exit 2."""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Iterable

# Characters that would break the one error line (or hide part of it): control and format
# characters, and the Unicode line and paragraph separators.
UNPRINTABLE_CATEGORIES = frozenset(("Cc", "Cf", "Zl", "Zp"))


def one_line(text: str) -> str:
    """``text`` with every control or format character written as an escape
    (``\\n``, ``\\x00``, ``\\u2028``), so that it prints as one line."""
    if text.isprintable():  # fast path: a printable string holds none of them
        return text
    out = []
    for ch in text:
        if unicodedata.category(ch) in UNPRINTABLE_CATEGORIES:
            out.append(repr(ch)[1:-1] if ch.isascii() else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


class InsrError(Exception):
    """Bad input from the user (config, paths, names). The CLI prints it on one line:
    control characters in it (from a key or value it quotes) are written as escapes."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class ConfigError(InsrError):
    """A config key holds something unusable. ``key`` is the dotted path."""

    def __init__(self, key: str, message: str):
        key = one_line(str(key))
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

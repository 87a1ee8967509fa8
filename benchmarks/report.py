"""Shared by the benchmark scripts: print a markdown table and put it into
docs/benchmarks.md between markers, so each benchmark owns one section."""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from collections.abc import Sequence

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "benchmarks.md")
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun the script with --write to refresh it.\n"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"


def add_write_option(ap: argparse.ArgumentParser, target: str = "docs/benchmarks.md") -> None:
    """``--write``: the only way a benchmark touches ``target``; without it the table is
    printed. ``--no-write`` (the old opt-out) is still accepted and does nothing."""
    ap.add_argument("--write", action="store_true", help=f"also write the table into {target} (default: print only)")
    ap.add_argument("--no-write", action="store_true", help=argparse.SUPPRESS)


def publish(write: bool, name: str, command: str, body: str, host: str | None = None) -> None:
    """Print the section ``name``; with ``write`` also put it into docs/benchmarks.md."""
    if write:
        write_section(name, command, body, host=host)  # prints the body too
    else:
        print(f"## {name}\n\n{body.strip()}\n\n(printed only: --write puts it into docs/benchmarks.md)")


def write_section(name: str, command: str, body: str, host: str | None = None) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md. ``host``: the
    machine it was measured on when that is not this one (default: :func:`machine`)."""
    stamp = time.strftime("%Y-%m-%d")
    section = (
        f"<!-- BEGIN {name} -->\n## {name}\n\nMeasured {stamp} on {host or machine()} with:\n\n"
        f"```\n{command}\n```\n\n{body.strip()}\n<!-- END {name} -->"
    )
    text = open(DOC, encoding="utf-8").read() if os.path.exists(DOC) else HEADER
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w", encoding="utf-8") as fh:
        fh.write(text)
    print(body)

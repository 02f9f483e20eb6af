"""What several facerun commands share: ``KEY=VALUE`` parameters and the progress line on stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ..errors import ParameterError


def parse_params(items: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """``key=value`` strings -> dict; values are JSON when they parse (numbers, true, null, lists), else text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"{option} {item!r} is not key=value")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


class Progress:
    """One self-updating stderr line: done/total, items/s, ETA (plain lines when not a terminal)."""

    def __init__(self, what: str, quiet: bool = False):
        self.what, self.quiet = what, quiet
        self.t0 = time.perf_counter()
        self.start: int | None = None
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if self.start is None:  # first committed chunk (after a resume, count from there)
            if done >= total:
                return self._print(done, total, done / max(now - self.t0, 1e-9))
            self.start, self.t0 = done, now
            return self._print(done, total, 0.0)
        if done < total and now - self.last < (0.2 if self.tty else 2.0):
            return
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        self._print(done, total, rate)

    def _print(self, done: int, total: int, rate: float) -> None:
        self.last = time.perf_counter()
        eta = (total - done) / rate if rate > 0 else float("nan")
        eta_s = f"{eta:5.0f}s" if eta == eta else "    ?"
        line = f"{self.what}: {done}/{total} ({100 * done / total:5.1f}%)  {rate:8.1f} items/s  ETA {eta_s}"
        if self.tty:
            click.echo("\r" + line + ("\n" if done >= total else ""), err=True, nl=False)
        else:
            click.echo(line, err=True)

"""A one-line progress bar on stderr, redrawn at most ten times a second."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self._stream = stream or sys.stderr
        self._start = time.monotonic()
        self._drawn = 0.0
        self._base = 0

    def resume_at(self, done: int) -> None:
        """Count `done` items as finished before this run (rate counts only this run's)."""
        self.done = self._base = done

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._start, 1e-6)
        rate = (self.done - self._base) / elapsed
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            line = f"{self.label} [{bar:<30}] {self.done}/{self.total} {share:4.0%} {rate:,.0f}/s"
        else:
            line = f"{self.label} {self.done} {rate:,.0f}/s"
        self._stream.write("\r" + line)
        self._stream.flush()

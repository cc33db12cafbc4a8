"""A process's resident memory, from /proc/<pid>/status."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Growth:
    """`with Growth(pid) as growth:` ... then `growth.mib`: how far the process's RSS rose
    above where it was at the start, from the kernel's peak (VmHWM, reset at the start)
    and from samples every 10 ms (in case the peak cannot be reset)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before_kib = 0
        self.peak_kib = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._peak_reset = False

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))

    def __enter__(self) -> Growth:
        self._peak_reset = reset_peak(self.pid)
        self.before_kib = status_kib(self.pid, "VmRSS")
        self.peak_kib = self.before_kib
        self._sampler.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._sampler.join()
        self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
        if self._peak_reset:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmHWM"))

    @property
    def mib(self) -> float:
        return (self.peak_kib - self.before_kib) / 1024

"""`corrigo serve --workers N`: N server processes answering on one address.

One supervisor (this module, in the process `corrigo serve` started) claims the address
(`port_claim`), checks that N database pools fit (`sizing`), then spawns the workers: each
a whole server (`app.serve`) whose socket joins the others' with SO_REUSEPORT, so the
kernel spreads new connections over them (connections, not calls). Workers are spawned,
not forked: each imports the server afresh, with its own identity in the leases and no
state of the supervisor's. The first worker starts alone (it applies migrations), the
others once it serves. A worker that dies is started again after a back-off that doubles
while workers keep dying; SIGTERM or SIGINT is passed to every worker, which drains as a
lone server does, and the supervisor ends when they all have.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType

from corrigo.server import app
from corrigo.server.config import Config, ConfigError, split_listen
from corrigo.server.ops import logs, metrics, port_claim, sizing

log = logging.getLogger("corrigo.workers")

# Seconds before a dead worker is started again: doubled at each death in a row, up to
# BACKOFF_MAX; a worker that served STEADY seconds starts the count over.
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STEADY = 60.0
# Beyond the grace period (given twice: to calls, then to background work), how long the
# supervisor waits for a stopping worker before it kills it.
STOP_MARGIN = 15.0


def supervise(config: Config) -> int:
    """Run `config.workers` workers until SIGTERM or SIGINT; the exit status (0 when every
    worker stopped cleanly). ConfigError when the address is taken or the pools cannot fit."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError(
            f"--workers {config.workers} needs SO_REUSEPORT, which this system lacks: "
            "run --workers 1, or one server per port behind a load balancer"
        )
    with port_claim.claim(config.listen) as listen:
        asyncio.run(sizing.check(config))
        with _metrics_directory(config) as directory:
            return _Supervisor(dataclasses.replace(config, listen=listen), directory).run()


@contextlib.contextmanager
def _metrics_directory(config: Config) -> Iterator[str | None]:
    """With --metrics-listen: a fresh directory for the workers' metric files, served at
    /metrics by this process while the block runs."""
    if not config.metrics_listen:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="corrigo-metrics-")
    # Spawned workers read it when they import prometheus_client.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    http, _ = metrics.serve_workers(*split_listen(config.metrics_listen), directory)
    log.info("metrics of every worker on port %d at /metrics", http.server_port)
    try:
        yield directory
    finally:
        http.shutdown()
        http.server_close()
        shutil.rmtree(directory, ignore_errors=True)


def _work(config: Config, ready: Connection, lifeline: Connection) -> None:
    """A worker's whole life: a server on the claimed address that says when it serves,
    and stops as on SIGTERM when the supervisor is gone (`lifeline` ends)."""
    # Ctrl-C reaches the whole process group: the supervisor passes it on as SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logs.configure(config.log_level, config.log_format, worker=True)
    threading.Thread(target=_stop_when_ended, args=(lifeline,), daemon=True).start()
    try:
        asyncio.run(app.serve(config, started=lambda: ready.send(os.getpid())))
    except ConfigError as error:
        log.error("%s", error)
        raise SystemExit(2) from None


def _stop_when_ended(lifeline: Connection) -> None:
    """Wait for the supervisor's end of `lifeline` to close (it never writes), then stop
    this worker gracefully: a supervisor killed outright leaves no worker behind."""
    with contextlib.suppress(EOFError, OSError):
        lifeline.recv_bytes()
    log.warning("the supervisor is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


@dataclasses.dataclass
class _Slot:
    """One of the N workers: its current process, and when to start the next one."""

    number: int
    process: BaseProcess | None = None
    ready: Connection | None = None
    started_at: float = 0.0
    deaths: int = 0
    due: float | None = None


class _Supervisor:
    def __init__(self, config: Config, metrics_directory: str | None) -> None:
        self.config = config
        self.metrics_directory = metrics_directory
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(number) for number in range(1, config.workers + 1)]
        self.stop_signal: int | None = None
        self.exit_status = 0
        # Held open for the supervisor's life; workers watch the other end.
        self.lifeline, self.held = self.context.Pipe(duplex=False)

    def run(self) -> int:
        wake, woken = socket.socketpair()
        wake.setblocking(False)
        woken.setblocking(False)
        # A signal wakes the wait below by a byte written to `wake`.
        signal.set_wakeup_fd(wake.fileno())
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        try:
            first, *others = self.slots
            self._start(first)
            if not self._first_serves(first, woken):
                return self._stop()
            for slot in others:
                self._start(slot)
            while self.stop_signal is None:
                self._watch(woken)
            log.info("%s: stopping %d workers", signal.strsignal(self.stop_signal), len(self.slots))
            return self._stop()
        finally:
            signal.set_wakeup_fd(-1)
            wake.close()
            woken.close()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_signal = signum

    def _start(self, slot: _Slot) -> None:
        receiving, sending = self.context.Pipe(duplex=False)
        process = self.context.Process(
            target=_work,
            args=(self.config, sending, self.lifeline),
            name=f"corrigo-worker-{slot.number}",
        )
        process.start()
        sending.close()
        slot.process, slot.ready, slot.started_at, slot.due = (
            process,
            receiving,
            time.monotonic(),
            None,
        )
        log.info("worker %d started (pid %d)", slot.number, process.pid)

    def _first_serves(self, slot: _Slot, woken: socket.socket) -> bool:
        """Wait until the first worker serves; False when it died first or a signal came."""
        assert slot.process is not None and slot.ready is not None
        while self.stop_signal is None:
            wait([slot.ready, slot.process.sentinel, woken])
            _drain(woken)
            if slot.ready.poll():
                self._serving(slot)
                return True
            if slot.process.exitcode is not None:
                log.error(
                    "worker 1 exited with status %s before serving (its log says why): stopping",
                    slot.process.exitcode,
                )
                self.exit_status = 1
                return False
        return False

    def _serving(self, slot: _Slot) -> None:
        assert slot.ready is not None
        with contextlib.suppress(EOFError):
            log.info("worker %d serving (pid %d)", slot.number, slot.ready.recv())
        slot.ready.close()
        slot.ready = None

    def _watch(self, woken: socket.socket) -> None:
        """Wait for a worker to serve or die, a restart to fall due, or a signal."""
        now = time.monotonic()
        dues = [slot.due for slot in self.slots if slot.due is not None]
        waited: list[Connection | socket.socket | int] = [woken]
        for slot in self.slots:
            if slot.process is not None:
                waited.append(slot.process.sentinel)
            if slot.ready is not None:
                waited.append(slot.ready)
        wait(waited, timeout=max(0.0, min(dues) - now) if dues else None)
        _drain(woken)
        now = time.monotonic()
        for slot in self.slots:
            if slot.ready is not None and slot.ready.poll():
                self._serving(slot)
            if slot.process is not None and slot.process.exitcode is not None:
                self._died(slot, now)
            if slot.due is not None and slot.due <= now and self.stop_signal is None:
                self._start(slot)

    def _died(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None and slot.process.pid is not None
        if now - slot.started_at >= STEADY:
            slot.deaths = 0
        delay = min(BACKOFF_FIRST * 2**slot.deaths, BACKOFF_MAX)
        slot.deaths += 1
        log.warning(
            "worker %d (pid %d) exited with status %s: starting another in %.1fs",
            slot.number,
            slot.process.pid,
            slot.process.exitcode,
            delay,
        )
        self._forget(slot)
        slot.due = now + delay

    def _forget(self, slot: _Slot) -> None:
        """The slot's process has ended: its pipe closes and its gauges leave /metrics."""
        assert slot.process is not None and slot.process.pid is not None
        if self.metrics_directory is not None:
            metrics.worker_gone(slot.process.pid, self.metrics_directory)
        if slot.ready is not None:
            slot.ready.close()
        slot.process.close()
        slot.process = slot.ready = None

    def _stop(self) -> int:
        """SIGTERM to every worker; wait for them to drain (killing any that outlast the
        grace periods); the exit status."""
        running = [slot for slot in self.slots if slot.process is not None]
        for slot in running:
            assert slot.process is not None and slot.process.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 2 * self.config.grace_seconds + STOP_MARGIN
        for slot in running:
            assert slot.process is not None
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.exitcode is None:
                log.warning("worker %d did not stop in time: killed", slot.number)
                slot.process.kill()
                slot.process.join()
            if slot.process.exitcode != 0:
                self.exit_status = self.exit_status or 1
            self._forget(slot)
        log.info("stopped")
        return self.exit_status


def _drain(woken: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        woken.recv(4096)

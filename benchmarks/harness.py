"""What the benchmarks share: a command timed as a subprocess, rounds that alternate the variants,
the machine and the code measured, and a plain text table (docs/benchmarks.md, "Method")."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")


class MeasurementFailed(Exception):
    """A measured command exited with an error; the message ends with the tail of its output."""


@dataclass(frozen=True)
class Measurement:
    """One run of a command: wall and CPU seconds, and peak RSS in MiB."""

    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    peak_rss_mib: float
    #: The measuring process's own peak at the start: a child's peak RSS cannot read below it.
    parent_peak_rss_mib: float
    #: The machine is shared: a run's 1-minute load average says how much else was running.
    loadavg_after: float
    #: What the command wrote to stdout and stderr.
    output: str
    #: With ``roles``: the peak of the summed RSS of the whole process tree (``ru_maxrss`` sees one process
    #: at a time), and per role the peak of its processes' summed RSS (sampled, :class:`TreeSampler`).
    tree_peak_rss_mib: float | None = None
    role_peak_rss_mib: dict[str, float] = field(default_factory=dict)
    #: With ``roles``: CPU seconds per role, each process's as last sampled (``ru_*`` above count only the
    #: descendants the command waited for; a JVM's Python workers are not among them).
    role_cpu_s: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """Every field but the output, e.g. for a JSON file."""
        figures = asdict(self)
        del figures["output"]
        return figures


def measure(command: Sequence[str], *, log: Path | None = None, cwd: Path | None = None,
            env: Mapping[str, str] | None = None, roles: Callable[[str], str] | None = None) -> Measurement:
    """Run ``command`` as a subprocess (stdout and stderr into ``log``, or a temporary file); raise
    :class:`MeasurementFailed` when it exits with an error.

    Peak RSS is ``os.wait4``'s ``ru_maxrss``: the largest of the child and of the descendants it
    waited for (not their sum). Linux starts a child's ``ru_maxrss`` from its parent's peak at the
    fork, so the measuring process must stay small: no DuckDB work of its own before measuring
    (``parent_peak_rss_mib`` shows it). ``roles`` (a process's command line → its role) samples the whole
    tree too: a command whose processes run side by side (a JVM and its Python workers, a notebook kernel
    beside its caller) peaks at their sum.
    """
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # A file, not a pipe: nothing has to read the output while the child runs.
    with log.open("w+b") if log is not None else tempfile.TemporaryFile() as handle:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=cwd, env=None if env is None else dict(env))
        sampler = TreeSampler(process.pid, roles) if roles is not None else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        if sampler is not None:
            sampler.stop()
        wall = time.perf_counter() - start
        # Reaped by wait4: Popen must not wait for it again.
        process.returncode = os.waitstatus_to_exitcode(status)
        handle.seek(0)
        output = handle.read().decode(errors="replace")
    if process.returncode != 0:
        raise MeasurementFailed(f"{shlex.join(command)} failed with exit code {process.returncode}:\n"
                                f"{output[-3000:]}")
    return Measurement(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, user_s=usage.ru_utime,
                       sys_s=usage.ru_stime, peak_rss_mib=usage.ru_maxrss / 1024, parent_peak_rss_mib=parent_peak,
                       loadavg_after=os.getloadavg()[0], output=output,
                       tree_peak_rss_mib=None if sampler is None else sampler.peak_mib,
                       role_peak_rss_mib={} if sampler is None else dict(sampler.role_peaks_mib),
                       role_cpu_s={} if sampler is None else sampler.role_cpu_s())


def process_role(command: str) -> str:
    """The role of a process in a measured tree, from its command line: a notebook kernel, Spark's JVM, a
    PySpark Python worker, or the command itself (``cli``)."""
    if "ipykernel" in command:
        return "kernels"
    if "pyspark.daemon" in command or "pyspark.worker" in command:
        return "python workers"
    if command.split(" ", 1)[0].endswith("java"):
        return "jvm"
    return "cli"


class TreeSampler(threading.Thread):
    """The summed RSS of a process and its descendants, read from ``/proc`` every ``interval`` seconds.

    A sample can miss a short peak: figures are a floor of the true peak, close to it for processes that
    hold their memory (a JVM, a DuckDB connection).
    """

    def __init__(self, pid: int, roles: Callable[[str], str], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.roles, self.interval = pid, roles, interval
        self.peak_mib = 0.0
        self.role_peaks_mib: dict[str, float] = {}
        #: pid → (role, user + system CPU seconds when last seen).
        self._cpu: dict[int, tuple[str, float]] = {}
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            self.sample()
            self._stopped.wait(self.interval)

    def stop(self) -> None:
        self._stopped.set()
        self.join()

    def role_cpu_s(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, seconds in self._cpu.values():
            totals[role] = totals.get(role, 0.0) + seconds
        return totals

    def sample(self) -> None:
        children: dict[int, list[int]] = {}
        stats: dict[int, list[str]] = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                except OSError:
                    continue
                # The command name in parentheses may hold spaces: the fields after its last ")" are fixed.
                fields = stat.rpartition(")")[2].split()
                stats[int(entry.name)] = fields
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        total = 0.0
        by_role: dict[str, float] = {}
        pending = [self.pid]
        while pending:
            pid = pending.pop()
            pending.extend(children.get(pid, ()))
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            rss = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")),
                       0.0)
            total += rss
            role = self.roles(command)
            by_role[role] = by_role.get(role, 0.0) + rss
            if pid in stats:  # utime and stime, fields 14 and 15 of stat (11 and 12 after the name)
                self._cpu[pid] = (role, (int(stats[pid][11]) + int(stats[pid][12])) / self._ticks)
        self.peak_mib = max(self.peak_mib, total)
        for role, rss in by_role.items():
            self.role_peaks_mib[role] = max(self.role_peaks_mib.get(role, 0.0), rss)


def side_by_side(variants: Sequence[T], rounds: int, *, alternate: bool = True) -> Iterator[tuple[int, T]]:
    """Every variant once a round, ``rounds`` rounds (numbered from 1), as ``(round, variant)``.

    The machine's speed changes within the hour, so variants are compared only within a run: with
    ``alternate`` every second round runs them in reverse order, so that a drift falls on all alike
    rather than on whichever runs last.
    """
    for number in range(1, rounds + 1):
        order = reversed(variants) if alternate and number % 2 == 0 else iter(variants)
        for variant in order:
            yield number, variant


def add_checkout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--code", action="append", default=[], metavar="NAME=PATH",
                        help="a checkout to measure, e.g. a `git worktree` of another commit (repeatable; "
                             "default: this one)")


def checkouts(parser: argparse.ArgumentParser, specs: Sequence[str]) -> dict[str, Path]:
    """``--code NAME=PATH`` options as ``{name: checkout}``; this checkout alone when there are none."""
    found: dict[str, Path] = {}
    for spec in specs:
        name, equals, path = spec.partition("=")
        if not equals or not name or not path:
            parser.error(f"--code {spec}: expected NAME=PATH, e.g. --code old=/tmp/checkout-old")
        found[name] = Path(path).resolve()
    return found or {"this": REPO}


def machine() -> dict[str, Any]:
    """What a figure was measured on."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"nproc": os.cpu_count(), "ram_gib": round(memory / 2**30, 1), "python": platform.python_version(),
            "duckdb": importlib.metadata.version("duckdb"), "platform": platform.platform(),
            "loadavg": os.getloadavg()[0]}


def source_fingerprint() -> dict[str, Any]:
    """Which ``webhook_core`` was measured: git HEAD, and a hash of the working copy (it may be edited)."""
    package = REPO / "webhook_core"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "webhook_core"], cwd=REPO,
                                    capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "?", True
    return {"git_head": head, "webhook_core_dirty": dirty, "webhook_core_sha256": digest.hexdigest()[:12]}


def print_table(header: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None,
                file: IO[str] | None = None) -> None:
    """``rows`` under ``header``, each column as wide as its widest cell; ``align`` is one ``l`` or ``r``
    per column (default: the first left, the others right). Cells are printed as ``str(cell)``:
    format the figures first."""
    cells = [[str(cell) for cell in header], *([str(cell) for cell in row] for row in rows)]
    align = align or "l" + "r" * (len(header) - 1)
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    for row in cells:
        line = "  ".join(cell.ljust(width) if side == "l" else cell.rjust(width)
                         for cell, width, side in zip(row, widths, align, strict=True))
        print(line.rstrip(), file=file or sys.stdout)

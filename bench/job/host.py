"""What the host did around a job: its memory, and how much of the machine other processes
(and the hypervisor, as steal time) took while an epoch ran. On a shared 2-core host a burst
of someone else's work can double an epoch; measuring it lets the report set such epochs
aside instead of calling the implementation slow."""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CONTENDED = 0.25  # others used more than a quarter of one core on average: a contended epoch


def reset_peak_rss() -> None:
    """Start a job's memory peak afresh, so an earlier job in the same process (Hydra's basic
    launcher) does not leave its peak behind (Linux; elsewhere the process peak is kept)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mb(field: str) -> float | None:
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024
    except (OSError, AttributeError):
        return None


def peak_rss_mb() -> float:
    """The process's resident-memory peak since the last reset (everything resident counts,
    the frameworks an earlier job of the process loaded too)."""
    peak = _status_mb("VmHWM")
    if peak is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return peak


def rss_mb() -> float:
    """Resident memory now (0 where /proc is missing)."""
    return _status_mb("VmRSS") or 0.0


def _machine_ticks() -> tuple[int, int]:
    """(busy, steal) CPU ticks of the whole machine since boot, from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


@dataclass
class Load:
    """Average cores busy with other processes, and cores stolen by the hypervisor."""

    others: float
    steal: float

    @property
    def contended(self) -> bool:
        return self.others + self.steal > CONTENDED


class LoadMeter:
    """Brackets a timed region: others' CPU = the machine's busy time minus this process's."""

    def start(self) -> None:
        self.t = time.perf_counter()
        self.busy, self.steal = _machine_ticks()
        self.own = sum(os.times()[:2])

    def stop(self) -> Load:
        wall = max(time.perf_counter() - self.t, 1e-9)
        busy, steal = _machine_ticks()
        own = sum(os.times()[:2]) - self.own
        others = max(0.0, (busy - self.busy) / TICKS_PER_S - own)
        return Load(others=others / wall, steal=(steal - self.steal) / TICKS_PER_S / wall)

"""Is this machine idle enough to benchmark? Load averages before/after and the CPU others used meanwhile.

``headpose bench`` refuses to start when the 1-minute load average exceeds ``--max-load`` (default
:func:`default_max_load`: a quarter of the usable cores, at least 0.5), unless ``--allow-load``, and
flags the result ``load.verdict = "loaded"`` when the machine was busy at the start or when other
processes used more than :data:`OTHERS_MAX_PCT` % of the machine's CPU time during the run. The load
average counts the benchmark's own threads, so the end figure alone cannot tell; the share of CPU
time that was not ours (``/proc/stat`` busy time minus this process's and its children's CPU time)
can.
"""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

from .fingerprint import usable_cores  # noqa: F401  (re-exported: the bench CLI takes it from here)

OTHERS_MAX_PCT = 10.0


def loadavg() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def default_max_load(cores: Optional[int] = None) -> float:
    return max(0.5, 0.25 * (cores or usable_cores()))


def _busy_seconds() -> Optional[float]:
    """Busy CPU seconds of the whole machine since boot (``/proc/stat``), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    steal = vals[7] if len(vals) > 7 else 0
    return (sum(vals[:8]) - idle - steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadWatch:
    """Load averages at start and end, and the CPU share others used in between."""

    def __init__(self, max_load: Optional[float] = None, cores: Optional[int] = None) -> None:
        self.cores = cores or usable_cores()
        self.max_load = default_max_load(self.cores) if max_load is None else float(max_load)
        self.start = loadavg()
        self._t0, self._busy0, self._own0 = time.monotonic(), _busy_seconds(), _own_seconds()

    def busy_at_start(self) -> bool:
        return bool(self.start) and self.start[0] > self.max_load

    def refuse_message(self) -> str:
        return (f"this machine is busy: 1-minute load average {self.start[0]} on {self.cores} usable cores, above "
                f"--max-load {self.max_load:g}; benchmark figures taken now describe the load, not the code. "
                f"Wait until it is idle, or pass --allow-load to measure anyway (the result is flagged)")

    def finish(self) -> Dict[str, object]:
        """The ``load`` record of a result: ``loadavg_start/end``, ``others_cpu_pct``, ``max_load``, ``verdict``, ``note``."""
        end = loadavg()
        wall = time.monotonic() - self._t0
        busy1 = _busy_seconds()
        others = None
        if busy1 is not None and self._busy0 is not None and wall > 0:
            theirs = max(0.0, (busy1 - self._busy0) - (_own_seconds() - self._own0))
            others = round(100.0 * theirs / (wall * self.cores), 1)
        reasons = []
        if self.busy_at_start():
            reasons.append(f"1-minute load average {self.start[0]} at the start, above {self.max_load:g}")
        if others is not None and others > OTHERS_MAX_PCT:
            reasons.append(f"other processes used {others} % of the CPU during the run (over {OTHERS_MAX_PCT:g} %)")
        verdict = "loaded" if reasons else "idle"
        note = ("taken under load: " + "; ".join(reasons) + ": absolute times are inflated, quote ratios at most"
                if reasons else f"idle: load average {self.start} at the start, other processes "
                                f"{others if others is not None else '?'} % of the CPU during the run")
        return {"loadavg_start": self.start, "loadavg_end": end, "others_cpu_pct": others, "cores": self.cores,
                "max_load": self.max_load, "verdict": verdict, "note": note}

"""Sustained mode: FPS over time with CPU temperature, clock and throttling where the device exposes them.

Sources (each optional; a missing one gives ``None``, never an error):

- Linux thermal zones: ``/sys/class/thermal/thermal_zone*/{type,temp}`` (milli-degrees Celsius).
- cpufreq: ``/sys/devices/system/cpu/cpu*/cpufreq/scaling_cur_freq`` (kHz).
- Raspberry Pi firmware: ``vcgencmd get_throttled`` (bit field, decoded by :func:`decode_throttled`)
  and ``vcgencmd measure_temp``.

A Pi that throttles after three minutes shows as a falling FPS line together with a rising
temperature, a falling clock and ``throttled_now`` turning true in the result's ``sustained.windows``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

log = logging.getLogger(__name__)

THERMAL_ROOT = "/sys/class/thermal"
CPU_ROOT = "/sys/devices/system/cpu"

# Zone types that measure the CPU, most specific first (x86 package, Pi SoC, generic ARM names).
CPU_ZONE_TYPES = ("x86_pkg_temp", "cpu-thermal", "cpu_thermal", "soc_thermal", "cpu", "soc", "acpitz")

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under_voltage_now",
    1: "freq_capped_now",
    2: "throttled_now",
    3: "soft_temp_limit_now",
    16: "under_voltage_occurred",
    17: "freq_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temp_limit_occurred",
}


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def read_thermal_zones(root: str = THERMAL_ROOT) -> Dict[str, float]:
    """Temperature of every readable thermal zone, ``{"<type>": degrees C}`` (``<type>#<n>`` if repeated)."""
    zones: Dict[str, float] = {}
    base = Path(root)
    if not base.is_dir():
        return zones
    for z in sorted(base.glob("thermal_zone*"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0)):
        raw = _read(z / "temp")
        if raw is None:
            continue
        try:
            value = int(raw) / 1000.0
        except ValueError:
            continue
        kind = _read(z / "type") or z.name
        key = kind if kind not in zones else f"{kind}#{z.name[len('thermal_zone'):]}"
        zones[key] = round(value, 1)
    return zones


def cpu_temperature(zones: Dict[str, float]) -> Optional[float]:
    """The CPU temperature among thermal zones (by type), or the hottest zone, or None."""
    if not zones:
        return None
    for want in CPU_ZONE_TYPES:
        for k, v in zones.items():
            if k.split("#")[0].lower() == want:
                return v
    return max(zones.values())


def read_cpu_mhz(root: str = CPU_ROOT) -> Dict[str, float]:
    """Current clock of each CPU with cpufreq, ``{"cpu0": MHz}``; empty where cpufreq is absent."""
    out: Dict[str, float] = {}
    base = Path(root)
    for c in sorted(base.glob("cpu[0-9]*"), key=lambda p: int(p.name[3:])):
        raw = _read(c / "cpufreq" / "scaling_cur_freq")
        if raw is None:
            continue
        try:
            out[c.name] = round(int(raw) / 1000.0, 1)
        except ValueError:
            continue
    return out


def decode_throttled(value: int) -> Dict[str, bool]:
    """The flags of a ``get_throttled`` bit field, e.g. ``0x50005`` -> under-voltage and throttling now."""
    return {name: bool(value >> bit & 1) for bit, name in THROTTLE_BITS.items()}


def parse_throttled(text: str) -> Optional[int]:
    """``"throttled=0x50005"`` -> ``0x50005``; None when the text holds no such field."""
    m = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text or "")
    return int(m.group(1), 0) if m else None


def parse_vc_temp(text: str) -> Optional[float]:
    """``"temp=48.3'C"`` -> 48.3; None when the text holds no such field."""
    m = re.search(r"temp=([0-9.]+)", text or "")
    return float(m.group(1)) if m else None


def _vcgencmd(*args: str) -> Optional[str]:
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=2).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def environment_sample(thermal_root: str = THERMAL_ROOT, cpu_root: str = CPU_ROOT) -> Dict[str, object]:
    """One reading of the device's thermal state.

    Returns
    -------
    dict
        ``cpu_temp_c`` (float or None), ``cpu_mhz`` (mean over cores or None), ``cpu_mhz_min``,
        ``throttled`` (raw int or None, Raspberry Pi only), ``throttled_flags`` (dict or None),
        ``load1`` (1-minute load average or None).
    """
    zones = read_thermal_zones(thermal_root)
    temp = cpu_temperature(zones)
    vc_temp = parse_vc_temp(_vcgencmd("measure_temp") or "")
    if vc_temp is not None:
        temp = vc_temp
    mhz = read_cpu_mhz(cpu_root)
    raw = parse_throttled(_vcgencmd("get_throttled") or "")
    try:
        load1 = round(os.getloadavg()[0], 2)
    except OSError:
        load1 = None
    return {
        "cpu_temp_c": temp,
        "cpu_mhz": round(sum(mhz.values()) / len(mhz), 1) if mhz else None,
        "cpu_mhz_min": min(mhz.values()) if mhz else None,
        "throttled": raw,
        "throttled_flags": decode_throttled(raw) if raw is not None else None,
        "load1": load1,
    }


def sensors_available(thermal_root: str = THERMAL_ROOT, cpu_root: str = CPU_ROOT) -> Dict[str, bool]:
    """Which of the three sources this device exposes."""
    return {"thermal_zones": bool(read_thermal_zones(thermal_root)), "cpufreq": bool(read_cpu_mhz(cpu_root)),
            "vcgencmd": shutil.which("vcgencmd") is not None}


class SustainedRecorder:
    """Collect frame completions into fixed windows with one environment sample per window.

    Parameters
    ----------
    window_s : float
        Window length in seconds (FPS and sensors are reported once per window).
    clock : callable
        Monotonic clock in seconds (``time.perf_counter``).
    sampler : callable
        Returns an environment sample dict (:func:`environment_sample`).
    """

    def __init__(self, window_s: float = 10.0, clock=time.perf_counter, sampler=environment_sample):
        self.window_s = float(window_s)
        self.clock = clock
        self.sampler = sampler
        self.t0 = clock()
        self._win_start = self.t0
        self._started = False
        self._frames = 0
        self._lat: List[float] = []
        self.windows: List[Dict[str, object]] = []

    def frame(self, latency_ms: float) -> None:
        """Record one finished frame; closes the window when ``window_s`` has passed.

        The clock starts when the first frame began (its end minus its latency), so model loading
        and warm-up before it never count as a slow first window.
        """
        now = self.clock()
        if not self._started:
            self._started = True
            self.t0 = self._win_start = now - latency_ms / 1000.0
        self._frames += 1
        self._lat.append(latency_ms)
        if now - self._win_start >= self.window_s:
            self._close(now)

    def _close(self, now: float) -> None:
        span = now - self._win_start
        if self._frames == 0 or span <= 0:
            return
        lat = sorted(self._lat)
        row = {"t_s": round(now - self.t0, 2), "frames": self._frames, "fps": round(self._frames / span, 2),
               "p50_ms": round(lat[len(lat) // 2], 3), "max_ms": round(lat[-1], 3)}
        row.update(self.sampler())
        self.windows.append(row)
        self._win_start, self._frames, self._lat = now, 0, []

    def finish(self) -> List[Dict[str, object]]:
        """Close the last partial window and return every window."""
        self._close(self.clock())
        return self.windows


def summarize_windows(windows: List[Dict[str, object]]) -> Dict[str, object]:
    """First vs last window: FPS drop, temperature rise, clock change, throttling seen.

    Returns
    -------
    dict
        ``fps_first``, ``fps_last``, ``fps_min``, ``fps_drop_pct`` (positive = slower at the end),
        ``temp_first_c``, ``temp_last_c``, ``temp_max_c``, ``mhz_first``, ``mhz_last``,
        ``throttled_seen`` (True/False, None where not exposed).
    """
    if not windows:
        return {}
    first, last = windows[0], windows[-1]
    temps = [w["cpu_temp_c"] for w in windows if w.get("cpu_temp_c") is not None]
    flags = [w.get("throttled_flags") for w in windows if w.get("throttled_flags") is not None]
    f0, f1 = float(first["fps"]), float(last["fps"])
    return {
        "fps_first": f0, "fps_last": f1, "fps_min": min(float(w["fps"]) for w in windows),
        "fps_drop_pct": round(100.0 * (f0 - f1) / f0, 1) if f0 > 0 else None,
        "temp_first_c": first.get("cpu_temp_c"), "temp_last_c": last.get("cpu_temp_c"),
        "temp_max_c": max(temps) if temps else None,
        "mhz_first": first.get("cpu_mhz"), "mhz_last": last.get("cpu_mhz"),
        "throttled_seen": (any(f["throttled_now"] or f["freq_capped_now"] or f["soft_temp_limit_now"]
                               for f in flags) if flags else None),
    }

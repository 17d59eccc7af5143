"""Device fingerprint: what machine and software a result was measured on.

Reads only the standard library, ``/proc`` and installed package metadata; it never imports the
inference libraries themselves (their versions come from package metadata).
"""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata
from pathlib import Path
from typing import Dict, Optional

# Distributions whose versions matter for a latency figure, by the name the result file uses.
PACKAGES = {
    "numpy": ("numpy",),
    "litert": ("ai-edge-litert", "tflite-runtime"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch",),
    "opencv": ("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
}


def package_version(*dists: str) -> Optional[str]:
    """Version of the first installed distribution among ``dists`` (e.g. ``"1.23.0"``), else None."""
    for d in dists:
        try:
            return metadata.version(d)
        except metadata.PackageNotFoundError:
            continue
    return None


def cpu_model(cpuinfo: Optional[str] = None) -> str:
    """Human CPU name: ``model name`` (x86), ``Model`` (Raspberry Pi), or the platform's processor.

    Parameters
    ----------
    cpuinfo : str, optional
        Text of ``/proc/cpuinfo`` (read from the system when not given).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    found: Dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if ":" not in line:
            continue
        k, v = (s.strip() for s in line.split(":", 1))
        if v and k not in found:
            found[k] = v
    for key in ("model name", "Model", "Hardware", "Processor", "cpu model"):
        if key in found:
            return found[key]
    return platform.processor() or platform.machine() or "unknown"


def board_model() -> Optional[str]:
    """Board name from the device tree (``Raspberry Pi 5 Model B Rev 1.0``), where there is one."""
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").rstrip("\x00").strip() or None
    except OSError:
        return None


def usable_cores() -> int:
    """CPU cores this process may run on (affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def os_name() -> str:
    """``PRETTY_NAME`` of ``/etc/os-release`` plus the kernel, e.g. ``Debian 12 (Linux 6.1.0)``."""
    pretty = None
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    kernel = f"{platform.system()} {platform.release()}"
    return f"{pretty} ({kernel})" if pretty else kernel


def fingerprint(device_name: Optional[str] = None) -> Dict[str, object]:
    """The ``device`` object of a result file.

    Parameters
    ----------
    device_name : str, optional
        A stable name for the device (``--device-name``, e.g. ``pi5-lab``); the hostname otherwise.

    Returns
    -------
    dict
        ``name``, ``hostname``, ``cpu``, ``board``, ``cores``, ``arch``, ``os``, ``python`` and
        ``packages`` (name -> version or None). Run settings (threads, XNNPACK) are recorded per
        measurement, since one run sweeps them.
    """
    host = socket.gethostname()
    return {
        "name": device_name or host,
        "hostname": host,
        "cpu": cpu_model(),
        "board": board_model(),
        "cores": usable_cores(),
        "arch": platform.machine(),
        "os": os_name(),
        "python": platform.python_version(),
        "packages": {k: package_version(*d) for k, d in PACKAGES.items()},
    }

"""Conversion leftovers: owned temporary folders, their sweep, and stopping on signals.

Every temporary folder of a conversion is named ``.<name>.<kind>-<host>-<pid>-<random>`` and lives
in the ``--out`` folder (``kind``: ``staging`` for the artifact being built, ``work`` for the ONNX and
logs, ``old`` for an artifact being replaced by ``--force``). A conversion killed with ``kill -9``
leaves them behind; :func:`sweep` at the start of the next conversion into that folder removes
those of processes on this host that no longer run (never another live run's), and puts back an
artifact whose ``--force`` replacement was cut between its two renames.

:func:`stop_on_signals` makes SIGINT and SIGTERM stop a conversion: the handler raises
:class:`Interrupted` at once, and, because onnx2tf's bare ``except:`` clauses can swallow that,
:func:`check` raises it again at the next step boundary. The callers' ``finally`` blocks then remove
the temporary folders; the CLI exits 128 + the signal number (130, 143).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

log = logging.getLogger(__name__)

_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<kind>staging|work|old)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_stop: Optional[int] = None  # the signal that asked to stop, while stop_on_signals is active


class Interrupted(KeyboardInterrupt):
    """A conversion stopped by a signal; ``signum`` gives the exit code 128 + signum."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def owner() -> str:
    """``<host>-<pid>``: the owner part of this process's temporary folder names."""
    return f"{socket.gethostname()}-{os.getpid()}"


def prefix(name: str, kind: str) -> str:
    """The ``tempfile.mkdtemp`` prefix of a temporary folder for ``name`` (see the module docstring)."""
    return f".{name}.{kind}-{owner()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep(folder: Path) -> None:
    """Remove the temporary folders that dead conversions on this host left in ``folder``.

    An ``old`` folder (a ``--force`` replacement cut between its renames) is renamed back to its
    artifact name when nothing took that name, else removed.
    """
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    host = socket.gethostname()
    for p in entries:
        m = _NAME.match(p.name)
        if not m or m["host"] != host or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        final = p.parent / m["name"]
        if m["kind"] == "old" and not final.exists():
            os.replace(p, final)
            log.warning("restored %s: a --force replacement of it was cut short (process %s)", final, m["pid"])
        else:
            shutil.rmtree(p, ignore_errors=True)
            log.info("removed %s, left by conversion process %s that no longer runs", p, m["pid"])


def check() -> None:
    """Raise :class:`Interrupted` when a signal asked to stop (called at every step boundary)."""
    if _stop is not None:
        raise Interrupted(_stop)


def _handle(signum, frame) -> None:
    global _stop
    first = _stop is None
    _stop = signum
    if first:
        log.warning("%s: stopping the conversion and removing its temporary files", signal.Signals(signum).name)
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the conversion inside (see the module docstring); main thread only."""
    global _stop
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)
           if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield
        check()  # a signal swallowed after the last step
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _stop = None


def stage_folder(out_dir: Path, name: str, kind: str = "staging") -> Path:
    """A new owned temporary folder for ``name`` in ``out_dir`` (same filesystem: the publish is a rename),
    with the mode a plain ``mkdir`` would give (``mkdtemp`` makes it 0700)."""
    from ..runtime.manifest import umask_mode
    path = Path(tempfile.mkdtemp(prefix=prefix(name, kind), dir=out_dir))
    if kind == "staging":
        os.chmod(path, umask_mode(0o777))  # the published artifact is readable
    return path


def publish(stage: Path, final: Path, force: bool) -> None:
    """Rename the staged artifact into place, replacing an old one only with ``force``; the old one is
    put back if the second rename fails (and by :func:`sweep` if the process is killed between them)."""
    from ..runtime.errors import ConversionError
    if final.exists():
        if not force:
            raise ConversionError(f"artifact '{final}' appeared while converting: pass --force to replace it")
        old = final.with_name(prefix(final.name, "old") + "0")  # restored by sweep if cut here
        os.replace(final, old)
        try:
            os.replace(stage, final)
        except BaseException:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, final)


@contextlib.contextmanager
def timed_step(name: str, timings: Dict[str, float], progress: Optional[Callable[[str], None]] = None):
    """One conversion step: stops on a pending signal, logs and records its seconds in ``timings``. An
    error raised while a signal asked to stop is that stop (:class:`Interrupted`, the error chained)."""
    check()  # a signal that onnx2tf's bare excepts swallowed stops here
    log.info("%s ...", name)
    t0 = time.perf_counter()
    try:
        yield
    except Exception as e:
        if _stop is not None:  # the step broke because the signal cut it (e.g. an import of a C extension)
            raise Interrupted(_stop) from e
        raise
    check()
    dt = time.perf_counter() - t0
    timings[name] = round(dt, 2)
    log.info("%s done in %.1f s", name, dt)
    if progress:
        progress(f"{name}: {dt:.1f} s")

"""Overlapped stages: capture, detection and pose on their own threads (``headpose run --pipelined``).

One :class:`PipelinedRunner` runs three stage threads joined by bounded FIFO queues; the caller's
thread (the CLI's main thread: signals, sinks, the window) takes the results in stream order::

    source --> [capture] --q--> [detect] --q--> [track + pose] --q--> caller (sinks)

- **capture** iterates the :class:`~headpose.runtime.sources.FrameSource` (OpenCV's decode releases
  the GIL) and stamps each frame with the time the source delivered it;
- **detect** runs :meth:`HeadPoseEstimator.detect_stage` on the frames the detect-every schedule
  detects (the same schedule as :meth:`HeadPoseEstimator.estimate`: every ``detect_every``-th frame
  since the start, every frame of an ``independent`` source) and passes the others through; it holds
  no tracking state;
- **track + pose** runs :meth:`HeadPoseEstimator.track_and_pose` frame after frame, so the tracker,
  the track ids and the One-Euro filters see exactly the sequence the sequential mode sees: the
  faces and angles are the same as :meth:`HeadPoseEstimator.estimate` frame by frame.

Each stage is one thread and each queue is FIFO, so frames leave in the order they came.
Detection works at most ``depth`` (default 1) frames ahead of pose, and capture decodes a frame
when detection asks for it (``depth - 1`` frames ahead), so a saturated pipeline holds two or three
frames and a frame's capture -> result latency is about two stage times (the decode, the detection
and the wait for the pose stage, then the pose), not the length of full queues. The
models run concurrently because LiteRT's ``Interpreter.invoke`` releases the GIL (measured by
``headpose bench`` with ``--pipelined on``: :func:`headpose.benchmarks.pipeline_latency.gil_overlap`; tested in
``tests/runtime/test_pipelined.py``); the Python glue of the stages (decode of the detections, tracking,
smoothing, the sinks) still takes turns on the GIL.

Threads: :func:`split_threads` plans ``--threads`` between the two models: the detector gets
half, rounded down (at least 1), the pose model all of them (it is the larger stage with several
faces, and uses the detector's core while that waits): 2 cores give 1 + 2, 4 cores 2 + 4. Capture
and the sinks are light and share the cores.

Stopping: :meth:`PipelinedRunner.stop` (a signal, ``--max-frames``, a closed window) lets the frames
already past detection finish and come out, drops the ones not yet detected, then the iteration
ends: the outputs hold a complete prefix of the stream, in order. An exception in any stage (a lost
source, a bad frame, a failed model) ends the iteration after every frame before it has come out,
and is raised in the caller's thread. :meth:`PipelinedRunner.close` stops at once and joins the
threads (a second Ctrl-C).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

log = logging.getLogger(__name__)

DEFAULT_DEPTH = 1   # frames a stage may work ahead of the next: full overlap, least added latency
_POLL_S = 0.05      # how often a waiting stage looks at the stop flags
_JOIN_S = 5.0       # close(): how long to wait for each stage thread


def machine_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def split_threads(threads: int) -> Tuple[int, int]:
    """Interpreter threads ``(detector, pose)`` of the pipelined mode for ``threads`` cores.

    The detector gets ``threads // 2`` (at least 1), the pose model all ``threads``: with several
    faces the pose stage is the larger one (7 faces x mobilenetv2 int8 vs one SCRFD-500M int8 at 640:
    ~2.5x the detector's time on the development VM), and while the detector is idle (waiting for
    the pose stage, or on the frames ``--detect-every`` skips) its core would otherwise sit unused.
    Measured on the 2-core development VM (same 30 frames, 7 faces, 2026-12-01): detector 1 + pose 2
    ran at 157 ms per frame, detector 1 + pose 1 at 207 ms (the one-thread sequential loop: 276 ms).
    ``threads = 1`` gives (1, 1): both stages share one core, overlapped only where one waits.
    """
    t = max(1, int(threads))
    return max(1, t // 2), t


@dataclass
class PipelinedResult:
    """One frame's result, as the pipelined runner hands it out (in stream order).

    Attributes
    ----------
    frame : Frame
        The source's frame (index, BGR image, timestamp, name).
    faces : list of Face
    timings : dict
        ms per estimator stage of this frame (``detector_preprocess``, ``detector``, ``decode``,
        ``crop``, ``pose``, ``smoothing``; 0 for a skipped stage).
    capture_ms : float
        Time the source took to deliver this frame (decode / camera wait).
    captured : float
        ``time.perf_counter()`` when the source delivered the frame.
    latency_ms : float
        Capture -> result: from ``captured`` to the moment the caller received the result.
    """

    frame: object
    faces: List[object]
    timings: Dict[str, float]
    capture_ms: float
    captured: float
    latency_ms: float = 0.0
    found: object = field(default=None, repr=False)


class _End:
    """End of the stream (or of what will be processed after a stop)."""


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class PipelinedRunner:
    """Capture, detection and pose on three threads over one :class:`HeadPoseEstimator`.

    Parameters
    ----------
    estimator : HeadPoseEstimator
        Its detector and pose interpreters are used by one thread each (never both by one thread at
        a time); do not call its :meth:`estimate` while the runner runs.
    source : iterable of Frame
        A :class:`~headpose.runtime.sources.FrameSource` (or any iterable of frames with ``image``
        and ``timestamp``); its ``independent`` attribute (a folder of unrelated images) resets the
        tracks and filters before every frame, as the sequential CLI does.
    max_frames : int
        Stop after this many frames (0 = all).
    depth : int
        How many frames detection may work ahead of pose (>= 1; capture decodes ``depth - 1`` ahead):
        1 overlaps the two models fully and keeps the capture -> result latency at about two stage times.
    color : ``"BGR"`` or ``"RGB"``, the frames' channel order

    Iterating yields :class:`PipelinedResult` objects in stream order; it raises the first error of
    any stage after the results of every frame before it.
    """

    def __init__(self, estimator, source: Iterable, max_frames: int = 0, depth: int = DEFAULT_DEPTH,
                 color: str = "BGR"):
        from .errors import InputError
        if int(depth) < 1:
            raise InputError(f"pipeline queue depth must be >= 1, found {depth}")
        self.est = estimator
        self.source = source
        self.independent = bool(getattr(source, "independent", False))
        self.max_frames = int(max_frames)
        self.color = color
        self.detect_every = int(estimator.options.detect_every)
        # Detection works at most `depth` frames ahead of pose: it takes a slot before it starts a frame and
        # the pose stage gives it back when it takes that frame. Capture decodes on request: the detect
        # stage asks for the next frame once it holds a slot (so the frame it gets is fresh, not one that
        # waited a whole stage time; `depth - 1` frames are decoded ahead). A saturated pipeline holds
        # ~2-3 frames, and a frame's capture -> result latency is ~2 stage times, not 3 full queues.
        self._cap_slots = threading.Semaphore(int(depth) - 1)
        self._det_slots = threading.Semaphore(int(depth))
        self._q_frames: "queue.Queue" = queue.Queue()   # bounded by _cap_slots
        self._q_found: "queue.Queue" = queue.Queue()    # bounded by _det_slots
        self._q_out: "queue.Queue" = queue.Queue(int(depth))
        self._stop = threading.Event()    # finish what is past detection, then end
        self._abort = threading.Event()   # end now
        self._threads: List[threading.Thread] = []
        self._started = False
        self._finished = False

    # -- control --------------------------------------------------------------------------------------
    def start(self) -> "PipelinedRunner":
        """Start the three stage threads (iterating starts them too)."""
        if self._started:
            return self
        self._started = True
        for name, target in (("capture", self._capture), ("detect", self._detect), ("pose", self._pose)):
            t = threading.Thread(target=target, name=f"headpose-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        return self

    def stop(self) -> None:
        """Finish the frames already past detection, drop the rest, then end the iteration."""
        self._stop.set()

    def close(self) -> bool:
        """Stop at once (frames in flight are dropped) and join the stage threads; safe to call twice.

        Returns False when a stage thread is still running after the wait (a source blocked in a
        read): the caller must then not close that source under it (the thread is a daemon)."""
        self._abort.set()
        self._stop.set()
        joined = True
        for t in self._threads:
            t.join(_JOIN_S)
            if t.is_alive():
                joined = False
                log.warning("pipeline thread %s did not stop within %.0f s", t.name, _JOIN_S)
        if joined:
            self._threads = []
        return joined

    def __enter__(self) -> "PipelinedRunner":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    # -- queues ---------------------------------------------------------------------------------------
    def _put(self, q: "queue.Queue", item) -> bool:
        """Put, waiting while the queue is full; False when the run was aborted meanwhile."""
        while not self._abort.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _slot(self, sem: threading.Semaphore) -> bool:
        """Take a slot, waiting for one; False when the run was aborted meanwhile."""
        while not self._abort.is_set():
            if sem.acquire(timeout=_POLL_S):
                return True
        return False

    def _get(self, q: "queue.Queue", stop_too: bool = False):
        """Get, waiting while the queue is empty; ``_End`` when aborted (or stopped, with ``stop_too``)."""
        while True:
            if self._abort.is_set() or (stop_too and self._stop.is_set()):
                return _End
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    # -- the stages -----------------------------------------------------------------------------------
    def _capture(self) -> None:
        it = iter(self.source)
        n = 0
        try:
            while not self._stop.is_set() and (not self.max_frames or n < self.max_frames):
                if not self._slot(self._cap_slots):
                    return
                t0 = time.perf_counter()
                try:
                    fr = next(it)
                except StopIteration:
                    break
                t1 = time.perf_counter()
                if not self._put(self._q_frames, (fr, (t1 - t0) * 1e3, t1)):
                    return
                n += 1
        except Exception as e:  # a lost source, an unreadable file: after the frames before it
            self._put(self._q_frames, _Failure(e))
            return
        finally:
            close = getattr(it, "close", None)  # a generator source: let it release what it holds
            if close is not None:
                try:
                    close()
                except Exception:  # pragma: no cover - closing is best effort
                    pass
        self._put(self._q_frames, _End)

    def _detect(self) -> None:
        n = 0  # frames since the start: the schedule of HeadPoseEstimator.estimate
        while True:
            if not self._slot(self._det_slots):
                return
            self._cap_slots.release()  # ask for the next frame now that it can be worked on at once
            item = self._get(self._q_frames, stop_too=True)
            if item is _End or isinstance(item, _Failure):
                self._put(self._q_found, item)
                return
            fr, capture_ms, captured = item
            try:
                image, color = self.est.prepare(fr.image, self.color)
                due = self.independent or n % self.detect_every == 0
                found = self.est.detect_stage(image, color) if due else None
            except Exception as e:
                self._put(self._q_found, _Failure(e))
                return
            n += 1
            if not self._put(self._q_found, PipelinedResult(fr, [], {}, capture_ms, captured, found=(image, found))):
                return

    def _pose(self) -> None:
        while True:
            item = self._get(self._q_found)
            self._det_slots.release()
            if item is _End or isinstance(item, _Failure):
                self._put(self._q_out, item)
                return
            try:
                image, found = item.found
                if self.independent:  # unrelated images: no tracking or smoothing across them
                    self.est.reset()
                expected = self.est.frame_index % self.detect_every == 0
                if (found is not None) != expected:  # the two stages' schedules must agree
                    from .errors import HeadposeError
                    raise HeadposeError(f"pipelined mode: frame {self.est.frame_index} "
                                        f"{'has' if found is not None else 'lacks'} detections, the tracker "
                                        f"expected {'them' if expected else 'none'} (detect_every "
                                        f"{self.detect_every}); this is a bug, please report it")
                item.faces = self.est.track_and_pose(image, self.color, found, item.frame.timestamp)
                item.timings = dict(self.est.last_timings)
                item.found = None
            except Exception as e:
                self._put(self._q_out, _Failure(e))
                return
            if not self._put(self._q_out, item):
                return

    # -- the caller's side ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[PipelinedResult]:
        self.start()
        while not self._finished:
            item = self._get(self._q_out)
            if item is _End:
                self._finished = True
                return
            if isinstance(item, _Failure):
                self._finished = True
                self._abort.set()
                raise item.error
            item.latency_ms = (time.perf_counter() - item.captured) * 1e3
            yield item

"""``headpose run`` on an image or folder with no output flag: annotated images and a face table.

A new user's first command should leave something to look at: :class:`AnnotatedImagesSink` writes
each annotated image into a folder (``headpose-out/`` by default, never beside the inputs, which
may be read-only) and :class:`FaceTableSink` writes a small table of the faces to a text stream.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .manifest import write_atomic
from .sinks import Sink, SinkError

log = logging.getLogger(__name__)

DEFAULT_DIR = "headpose-out"


class AnnotatedImagesSink(Sink):
    """One annotated image per frame, ``<folder>/<input name>`` (``frame_000012.jpg`` without a name).

    Parameters
    ----------
    folder : path
        Created when missing (its parent must exist).
    names : sequence of str, optional
        The input file of each frame index (``ImagesSource.paths``); only the file name is used.
    """

    def __init__(self, folder=DEFAULT_DIR, names: Optional[Sequence] = None):
        try:
            import cv2
        except ImportError:
            raise SinkError("writing annotated images needs OpenCV: pip install 'headpose-edge[video]'") from None
        self.cv2 = cv2
        self.folder = Path(folder)
        if not self.folder.parent.exists():
            raise SinkError(f"cannot write annotated images to '{self.folder}': folder '{self.folder.parent}' "
                            f"does not exist")
        self.names = [Path(n).name for n in names] if names is not None else []
        self.written = []

    def write(self, index, time_ms, faces, image) -> bool:
        self.folder.mkdir(exist_ok=True)
        i = int(index)
        target = self.folder / (self.names[i] if i < len(self.names) else f"frame_{i:06d}.jpg")
        ok, encoded = self.cv2.imencode(target.suffix, image)
        if not ok:
            raise SinkError(f"cannot write annotated image '{target}': OpenCV has no encoder for "
                            f"'{target.suffix}'")
        try:
            write_atomic(target, encoded.tobytes())
        except OSError as e:
            raise SinkError(f"cannot write annotated image '{target}': {e.strerror or e}; check that the "
                            f"folder is writable and the disk has space") from None
        self.written.append(target)
        return True


def face_table(faces: Sequence, title: str = "") -> str:
    """A small text table of ``faces``: track id, box, yaw, pitch, roll (degrees), score."""
    lines = [f"{title}: {len(faces)} face{'s' if len(faces) != 1 else ''}"] if title else []
    if faces:
        lines.append(f"{'track':>5}  {'box x1,y1,x2,y2':>23}  {'yaw':>6}  {'pitch':>6}  {'roll':>6}  {'score':>5}")
        for f in faces:
            box = ",".join(f"{float(v):.0f}" for v in list(f.box)[:4])
            lines.append(f"{int(f.track_id):>5}  {box:>23}  {f.yaw:>+6.1f}  {f.pitch:>+6.1f}  {f.roll:>+6.1f}  "
                         f"{float(f.score):>5.2f}")
    return "\n".join(lines)


class FaceTableSink(Sink):
    """Writes :func:`face_table` of every frame to ``stream`` (the CLI passes stdout)."""

    def __init__(self, stream: TextIO, names: Optional[Sequence] = None):
        self.stream = stream
        self.names = [Path(n).name for n in names] if names is not None else []

    def write(self, index, time_ms, faces, image=None) -> bool:
        i = int(index)
        self.stream.write(face_table(faces, self.names[i] if i < len(self.names) else f"frame {i}") + "\n")
        self.stream.flush()
        return True

"""SCRFD face detection with a TFLite artifact: letterbox, normalise, run, decode - all per manifest.

Every fact comes from the artifact's ``manifest.json``: the input size, layout, colour order and
normalisation; which output tensor (by name) is the score, box or keypoint map of which stride;
the strides, anchors per cell and thresholds. Decoding is :func:`~headpose.runtime.scrfd.decode_scrfd`.

:meth:`FaceDetector.detect` letterboxes the uint8 frame straight into the interpreter's input buffer
(:class:`~headpose.runtime.preprocess.InputWriter`: one uint8 resize, one pixel table into float32 or,
for an int8-input artifact, into the quantised int8 values); :meth:`FaceDetector.preprocess` +
:meth:`FaceDetector.raw` is the same computation through a float32 array (identical values).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Dict, Optional, Tuple, Union

import numpy as np

from .errors import ManifestError
from .interpreter import TFLiteModel
from .manifest import SCRFD_ROLES, Manifest, load_manifest
from .preprocess import InputWriter, as_three_channels, letterbox, normalise, to_color
from .scrfd import decode_scrfd, outputs_by_role

log = logging.getLogger(__name__)

class FaceDetector:
    """SCRFD detector over a TFLite artifact.

    Parameters
    ----------
    artifact : path or Manifest
        Artifact directory (``manifest.json`` + ``.tflite``) of task ``face_detection``.
    num_threads : int
        Interpreter CPU threads.
    xnnpack : bool
        Use the XNNPACK delegate.
    score_threshold : float, optional
        Overrides the manifest's ``decode.score_threshold``.
    max_faces : int
        Keep at most this many faces (highest score first); 0 keeps all.
    use_opencv : bool
        Resize with OpenCV when installed (same geometry as the NumPy path, <= 1 grey level apart).

    Attributes
    ----------
    last_timings : dict
        ms of the last :meth:`detect`: ``detector_preprocess``, ``detector``, ``decode``.
    """

    def __init__(self, artifact: Union[str, os.PathLike, Manifest], num_threads: int = 1, xnnpack: bool = True,
                 score_threshold: Optional[float] = None, max_faces: int = 0, use_opencv: bool = True):
        m = artifact if isinstance(artifact, Manifest) else load_manifest(artifact, expect_task="face_detection")
        if m.task != "face_detection":
            raise ManifestError(f"artifact '{m.id}' is a {m.task} model, but a face_detection model was expected "
                                f"as the detector; pass the SCRFD artifact")
        dec = m.scrfd  # typed and checked by Manifest.from_dict (kind, strides, thresholds, outputs per stride)
        self.manifest = m
        self.input_size = m.input_hw
        self.strides = dec.strides
        self.num_anchors = dec.anchors_per_cell
        self.score_threshold = float(dec.score_threshold if score_threshold is None else score_threshold)
        self.nms_threshold = dec.nms_threshold
        self.max_faces = int(max_faces)
        self.use_opencv = bool(use_opencv)
        self.roles: Dict[str, Tuple[str, int]] = {o.name: (o.role, int(o.stride)) for o in m.outputs
                                                  if o.role in SCRFD_ROLES and o.stride is not None}
        self.model = TFLiteModel(m, num_threads, xnnpack)
        inp = m.input
        # the hot path writes NHWC pixels into the input buffer; an NCHW artifact takes the float path
        self._writer = (InputWriter(inp.mean, inp.std, inp.color, self.model.input_dtype,
                                    self.model.input_quantization, self.use_opencv)
                        if inp.layout == "NHWC" else None)
        self.last_timings = {"detector_preprocess": 0.0, "detector": 0.0, "decode": 0.0}

    def preprocess(self, frame: np.ndarray, color: str = "BGR") -> Tuple[np.ndarray, float]:
        """Letterboxed, normalised input (1, H, W, 3) or (1, 3, H, W) float32, and the letterbox scale."""
        canvas, scale = letterbox(frame, self.input_size, self.use_opencv)
        inp = self.manifest.input
        x = normalise(to_color(canvas, color, inp.color), inp.mean, inp.std)
        x = x[None] if inp.layout == "NHWC" else x.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x), scale

    def _fill(self, frame: np.ndarray, color: str) -> float:
        """Letterbox ``frame`` into the interpreter's input buffer; the letterbox scale."""
        box = [0.0]

        def write(buf: np.ndarray) -> None:
            box[0] = self._writer.letterbox(frame, buf[0], color, buffer_id=id(self.model.interpreter))
        self.model.fill(write)
        return box[0]

    def raw(self, x: np.ndarray) -> Dict[Tuple[str, int], np.ndarray]:
        """Run the interpreter; ``(role, stride) -> float32 array``."""
        return outputs_by_role(self.model(x), self.roles)

    def decode(self, outputs: Dict[Tuple[str, int], np.ndarray], scale: float) -> Tuple[np.ndarray, np.ndarray]:
        """Boxes and keypoints in frame pixels (see :func:`~headpose.runtime.scrfd.decode_scrfd`)."""
        return decode_scrfd(outputs, self.input_size, self.strides, self.num_anchors, self.score_threshold,
                            self.nms_threshold, scale, self.max_faces)

    def detect(self, frame: np.ndarray, color: str = "BGR") -> Tuple[np.ndarray, np.ndarray]:
        """Find the faces of one frame.

        Parameters
        ----------
        frame : ndarray, (H, W, 3) uint8 (grey and 4-channel frames are converted)
        color : ``"BGR"`` or ``"RGB"``, the frame's channel order

        Returns
        -------
        dets : ndarray, (K, 5), float32: x1, y1, x2, y2, score in frame pixels, best first
        kps : ndarray, (K, 5, 2), float32: eyes, nose, mouth corners in frame pixels
        """
        frame = as_three_channels(frame)
        t0 = time.perf_counter()
        if self._writer is None:
            x, scale = self.preprocess(frame, color)
            t1 = time.perf_counter()
            out = self.raw(x)
        else:
            scale = self._fill(frame, color)
            t1 = time.perf_counter()
            out = outputs_by_role(self.model.invoke(), self.roles)
        t2 = time.perf_counter()
        dets, kps = self.decode(out, scale)
        t3 = time.perf_counter()
        self.last_timings = {"detector_preprocess": (t1 - t0) * 1e3, "detector": (t2 - t1) * 1e3,
                             "decode": (t3 - t2) * 1e3}
        return dets, kps

"""Head pose of every face of a frame in one batched TFLite call: crop, run, 6D -> R -> Euler.

The crop (box expansion margin), input size, colour order and normalisation come from the
artifact's ``manifest.json``; the output is found by its role ``ortho6d``.

:meth:`PoseEstimator.estimate` cuts and resizes every face (uint8) and maps it with one pixel table
straight into the interpreter's input buffer of that face count
(:class:`~headpose.runtime.preprocess.InputWriter`, :meth:`~headpose.runtime.interpreter.TFLiteModel.fill`);
:meth:`PoseEstimator.crop` + :meth:`PoseEstimator.infer` is the same computation through a float32 batch.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Tuple, Union

import numpy as np

from .errors import HeadposeError, ManifestError
from .interpreter import TFLiteModel
from .manifest import Manifest, load_manifest
from .preprocess import InputWriter, as_three_channels, crop_boxes, crop_faces
from .rotation import euler_from_rotation, rotation_from_6d

log = logging.getLogger(__name__)


class PoseEstimator:
    """6D-rotation head-pose network over a TFLite artifact.

    Parameters
    ----------
    artifact : path or Manifest
        Artifact directory of task ``head_pose`` (decode kind ``ortho6d``).
    num_threads : int
    xnnpack : bool
    use_opencv : bool
        Resize crops with OpenCV when installed (same geometry as NumPy, <= 1 grey level apart).

    Attributes
    ----------
    margin : float
        Box expansion of the crop (``decode.crop.margin``).
    size : (height, width) of the network input
    last_timings : dict
        ms of the last :meth:`estimate`: ``crop``, ``pose``.
    """

    def __init__(self, artifact: Union[str, os.PathLike, Manifest], num_threads: int = 1, xnnpack: bool = True,
                 use_opencv: bool = True):
        m = artifact if isinstance(artifact, Manifest) else load_manifest(artifact, expect_task="head_pose")
        if m.task != "head_pose":
            raise ManifestError(f"artifact '{m.id}' is a {m.task} model, but a head_pose model was expected as "
                                f"the pose model; pass the pose artifact")
        if m.input.layout != "NHWC":
            raise ManifestError(f"artifact '{m.id}': pose input layout {m.input.layout} is not supported by the "
                                f"device runtime (expected NHWC, as `headpose convert --format tflite` writes)")
        self.manifest = m
        self.margin = m.pose.margin  # typed and checked by Manifest.from_dict (kind, margin, square input)
        self.size = m.input_hw
        self.output_name = m.output("ortho6d").name
        self.use_opencv = bool(use_opencv)
        self.model = TFLiteModel(m, num_threads, xnnpack)
        self._writer = InputWriter(m.input.mean, m.input.std, m.input.color, self.model.input_dtype,
                                   self.model.input_quantization, self.use_opencv)
        self._batched = True
        self.last_timings = {"crop": 0.0, "pose": 0.0}

    def crop(self, frame: np.ndarray, boxes: np.ndarray, color: str = "BGR") -> Tuple[np.ndarray, np.ndarray]:
        """Normalised crops (M, S, S, 3) float32 of the boxes that give a non-empty crop, and their indices."""
        inp = self.manifest.input
        return crop_faces(frame, boxes, self.size[0], inp.mean, inp.std, color, inp.color, self.margin,
                          self.use_opencv)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Raw 6D outputs (M, 6) float32 of a crop batch, in ONE interpreter call.

        Falls back to one call per face only if the model's batch dimension cannot be resized
        (logged once).
        """
        if batch.shape[0] == 0:
            return np.zeros((0, 6), np.float32)
        if self._batched:
            try:
                return self.model(batch)[self.output_name].reshape(batch.shape[0], 6)
            except (RuntimeError, ValueError) as e:
                if batch.shape[0] == 1:
                    raise
                log.warning("pose artifact '%s' cannot run a batch of %d (%s); running faces one by one",
                            self.manifest.id, batch.shape[0], e)
                self._batched = False
        return np.concatenate([self.model(batch[i:i + 1])[self.output_name].reshape(1, 6)
                               for i in range(batch.shape[0])])

    def _run_batch(self, regions, frame: np.ndarray, boxes: np.ndarray, color: str):
        """Crops written into the input buffer of ``len(regions)`` faces, then ONE call: ((n, 6), crop end time).

        One face at a time (through :meth:`infer`) if the model cannot run a batch of that size."""
        n = len(regions)
        try:
            self.model.fill(lambda buf: self._writer.crops(frame, regions, buf, color), batch=n)
            t1 = time.perf_counter()
            return self.model.invoke()[self.output_name].reshape(n, 6), t1
        except (RuntimeError, ValueError, HeadposeError) as e:
            if n == 1:
                raise
            log.warning("pose artifact '%s' cannot run a batch of %d (%s); running faces one by one",
                        self.manifest.id, n, e)
            self._batched = False
            batch = self.crop(frame, boxes, color)[0]
            return self.infer(batch), time.perf_counter()

    def estimate(self, frame: np.ndarray, boxes: np.ndarray, color: str = "BGR"
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pose of every box of one frame.

        Parameters
        ----------
        frame : ndarray, (H, W, 3) uint8, ``color`` order (grey / 4-channel converted)
        boxes : ndarray, (N, >=4), x1, y1, x2, y2 in frame pixels

        Returns
        -------
        rotations : ndarray, (M, 3, 3), float64
        euler : ndarray, (M, 3), float64: pitch, yaw, roll in degrees
        kept : ndarray, (M,), int: indices into ``boxes`` (a box entirely outside the frame has no crop)
        """
        frame = as_three_channels(frame)
        boxes = np.asarray(boxes, np.float32).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 4)
        t0 = time.perf_counter()
        regions, kept = crop_boxes(frame.shape[:2], boxes, self.margin)
        if self._batched and regions:
            v6, t1 = self._run_batch(regions, frame, boxes, color)
        else:
            batch, kept = self.crop(frame, boxes, color)
            t1 = time.perf_counter()
            v6 = self.infer(batch)
        r = rotation_from_6d(v6).reshape(-1, 3, 3)
        eul = euler_from_rotation(r).reshape(-1, 3)
        t2 = time.perf_counter()
        if len(kept) < len(boxes):
            log.debug("%d face box(es) outside the frame gave no crop", len(boxes) - len(kept))
        self.last_timings = {"crop": (t1 - t0) * 1e3, "pose": (t2 - t1) * 1e3}
        return r, eul, kept

"""The versioned result schema of ``headpose bench`` (one JSON file per run).

The full documentation is ``benchmarks/SCHEMA.md``; this docstring is its outline.

Phones (``android_demo/``, ``ios_notes/``) and other tools write the same schema. The smallest valid
file is the **device-only subset**: ``schema``, ``schema_version``, ``device`` (at least ``name``,
``os``, ``arch``) and ``model_latency`` (each entry at least ``model``, ``precision``, ``format``,
``runtime``, ``threads`` and ``stats`` with ``p50``/``p99``). Everything else is optional, and a
reader must ignore fields it does not know.

Schema ``headpose-bench`` version 1 (all latencies in milliseconds)::

    {
      "schema": "headpose-bench", "schema_version": 1,
      "run_id": "vm-20261125T131500Z",                 # device name + UTC start time
      "created_utc": "2026-11-25T13:15:00Z",
      "tool": {"name": "headpose bench", "version": "0.1.0", "command": "headpose bench ..."},
      "device": {"name", "hostname", "cpu", "board", "cores", "arch", "os", "python",
                 "packages": {"numpy", "litert", "onnxruntime", "torch", "opencv": version|null}},
      "load": {"loadavg_start": [1, 5, 15 min], "loadavg_end": [...], "note": str},
      "budgets": {"fps_min": 30.0, "p99_ms_max": 100.0},
      "settings": {"video", "frames", "warmup", "runs", "seconds", "threads": [..], "precisions": [..],
                   "pose_models": [..], "detector", "detect_every": [..], "xnnpack": [..], "weights": {...}},
      "artifacts": [{"id", "model", "task", "format", "precision", "file_sha256", "file_bytes",
                     "weights": "trained" | "seeded" | "released", "source_sha256"}],
      "model_latency": [{
          "key": "litert|mobilenetv3_small|int8|t2|xnn",  # unique within the run
          "artifact": id | null, "model", "task", "format": "tflite"|"onnx"|"torch"|...,
          "precision", "runtime": "litert"|"onnxruntime"|"torch"|"coreml"|"nnapi"|...,
          "threads": int, "xnnpack": bool|null, "batch": int, "input_shape": [..],
          "load_ms": float, "first_run_ms": float,
          "stats": {"n", "mean", "std", "min", "p50", "p90", "p99", "max"},
          "samples_ms": [..]}],                          # optional, the raw timings
      "pipelines": [{
          "key": "litert|mobilenetv3_small|int8|t2|de1|xnn",
          "backend": "litert" | "onnxruntime", "style": "headpose" | "yakhyo-onnxruntime",
          "detector": artifact id, "pose": artifact id, "model", "precision", "threads", "xnnpack",
          "detect_every": int, "frames": int, "faces_total": int,
          "faces_per_frame": {"mean", "max"},
          "load_ms": float, "first_frame_ms": float, "peak_rss_mb": float,
          "stages": {"capture": stats, "detector_preprocess": stats, "detector": stats,
                     "decode": stats, "crop": stats, "pose": stats, "smoothing": stats, "draw": stats},
          "end_to_end": stats, "samples_ms": [..], "wall_s": float, "fps": float,
          "verdict": {"fps": "PASS"|"FAIL"|"n/a", "p99": ..., "overall": ...},
          "pipelined": bool, "detector_threads": int, "pose_threads": int, "detected_frames": int,  # optional
          "bound": {"ms_per_frame", "capture_ms", "detector_ms", "detector_model_ms", "detected_fraction",
                    "pose_ms_per_face", "pose_batch", "faces_per_frame", "detector_threads", "pose_threads"},
          "efficiency": float}],                       # optional: bound.ms_per_frame / (1000 / fps)
      "comparisons": [{"baseline": pipeline key, "candidate": pipeline key,
                       "speedup_p50": float, "speedup_mean": float, "fps_ratio": float}],
      "sustained": null | {"key": pipeline key, "duration_s", "window_s", "sensors": {...},
                           "windows": [{"t_s", "frames", "fps", "p50_ms", "max_ms", "cpu_temp_c",
                                        "cpu_mhz", "cpu_mhz_min", "throttled", "throttled_flags",
                                        "load1"}],
                           "summary": {...}},
      "gil": {"sequential_ms", "threaded_ms", "overlap", "runs", "threads", "detector", "pose"},  # optional
      "notes": [str, ...]
    }

End-to-end latency of a frame is capture (video decode) + the estimator call + drawing; ``fps`` is
frames / wall time over the measured frames. ``verdict`` applies the budgets to ``fps`` and
``end_to_end.p99``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Union

from ..runtime.errors import InputError

SCHEMA_NAME = "headpose-bench"
SCHEMA_VERSION = 1

STATS_REQUIRED = ("p50", "p99")
DEVICE_REQUIRED = ("name", "os", "arch")
LATENCY_REQUIRED = ("model", "precision", "format", "runtime", "threads", "stats")
PIPELINE_REQUIRED = ("key", "backend", "model", "precision", "threads", "detect_every", "frames",
                     "end_to_end", "fps")
VERDICTS = ("PASS", "FAIL", "n/a")


class ResultError(InputError):
    """A result file that does not follow the schema."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_stats(stats: Any, where: str, errors: List[str]) -> None:
    if not isinstance(stats, dict):
        errors.append(f"{where}: expected a stats object with {', '.join(STATS_REQUIRED)}, found "
                      f"{type(stats).__name__}")
        return
    for k in STATS_REQUIRED:
        if not _number(stats.get(k)):
            errors.append(f"{where}.{k}: expected a number of milliseconds, found {stats.get(k)!r}")


def _entries(items, name, required, errors):
    """Yield ``(where, entry)`` for the object entries of a list, reporting non-objects and missing keys."""
    for i, e in enumerate(items):
        where = f"{name}[{i}]"
        if not isinstance(e, dict):
            errors.append(f"{where}: expected an object")
            continue
        for k in required:
            if k not in e:
                errors.append(f"{where}: missing '{k}'")
        yield where, e


def validate(result: Any) -> List[str]:
    """Every schema violation of a result object (empty list: valid).

    Checks the required fields of the device-only subset, and the fields of any ``pipelines``,
    ``comparisons`` and ``sustained`` present.
    """
    errors: List[str] = []
    if not isinstance(result, dict):
        return [f"expected a JSON object, found {type(result).__name__}"]
    if result.get("schema") != SCHEMA_NAME:
        errors.append(f"schema: expected '{SCHEMA_NAME}', found {result.get('schema')!r}")
    if result.get("schema_version") != SCHEMA_VERSION:
        errors.append(f"schema_version: expected {SCHEMA_VERSION}, found {result.get('schema_version')!r} "
                      f"(written by another version of headpose bench?)")
    dev = result.get("device")
    if not isinstance(dev, dict):
        errors.append("device: expected an object with name, os, arch")
    else:
        for k in DEVICE_REQUIRED:
            if not isinstance(dev.get(k), str) or not dev.get(k):
                errors.append(f"device.{k}: expected a non-empty string, found {dev.get(k)!r}")
    lat = result.get("model_latency")
    if not isinstance(lat, list):
        errors.append("model_latency: expected a list (may be empty when pipelines are given)")
        lat = []
    for where, e in _entries(lat, "model_latency", LATENCY_REQUIRED, errors):
        if "threads" in e and (not isinstance(e["threads"], int) or e["threads"] < 1):
            errors.append(f"{where}.threads: expected a positive integer, found {e['threads']!r}")
        if "stats" in e:
            _check_stats(e["stats"], f"{where}.stats", errors)
    pipes = result.get("pipelines", [])
    if not isinstance(pipes, list):
        errors.append("pipelines: expected a list")
        pipes = []
    for where, p in _entries(pipes, "pipelines", PIPELINE_REQUIRED, errors):
        if "end_to_end" in p:
            _check_stats(p["end_to_end"], f"{where}.end_to_end", errors)
        if "fps" in p and not _number(p["fps"]):
            errors.append(f"{where}.fps: expected a number, found {p['fps']!r}")
        for k, v in (p.get("verdict") or {}).items():
            if v not in VERDICTS:
                errors.append(f"{where}.verdict.{k}: expected one of {', '.join(VERDICTS)}, found {v!r}")
        if "pipelined" in p and not isinstance(p["pipelined"], bool):
            errors.append(f"{where}.pipelined: expected true or false, found {p['pipelined']!r}")
        if "bound" in p:  # optional (results before the model-only bound have none)
            b = p["bound"]
            if not isinstance(b, dict) or not _number(b.get("ms_per_frame")) or b["ms_per_frame"] < 0:
                errors.append(f"{where}.bound: expected an object with ms_per_frame >= 0 (the model-only bound), "
                              f"found {b!r}")
        if "efficiency" in p and (not _number(p["efficiency"]) or p["efficiency"] < 0):
            errors.append(f"{where}.efficiency: expected a number >= 0 (bound / measured ms per frame), "
                          f"found {p['efficiency']!r}")
        if "efficiency" in p and "bound" not in p:
            errors.append(f"{where}.efficiency: given without the bound it is computed from")
    keys = [p.get("key") for p in pipes if isinstance(p, dict)]
    for i, c in enumerate(result.get("comparisons", []) or []):
        for k in ("baseline", "candidate"):
            if c.get(k) not in keys:
                errors.append(f"comparisons[{i}].{k}: {c.get(k)!r} is not the key of a pipeline in this file")
    gil = result.get("gil")
    if gil is not None and (not isinstance(gil, dict) or not _number(gil.get("overlap"))):
        errors.append(f"gil: expected null or an object with a number 'overlap', found {gil!r}")
    if not lat and not pipes:
        errors.append("a result must hold at least one model_latency or pipelines entry")
    sus = result.get("sustained")
    if sus is not None:
        if not isinstance(sus, dict) or not isinstance(sus.get("windows"), list):
            errors.append("sustained: expected null or an object with a 'windows' list")
        else:
            for i, w in enumerate(sus["windows"]):
                if not _number(w.get("t_s")) or not _number(w.get("fps")):
                    errors.append(f"sustained.windows[{i}]: expected numbers t_s and fps")
    return errors


def check(result: Any, where: str = "result") -> Dict[str, Any]:
    """Return ``result`` when valid, else raise :class:`ResultError` listing the first problems."""
    errors = validate(result)
    if errors:
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ResultError(f"{where} is not a valid {SCHEMA_NAME} v{SCHEMA_VERSION} result: "
                          f"{'; '.join(errors[:5])}{more}. Write it with `headpose bench` or follow "
                          f"benchmarks/SCHEMA.md")
    return result


def load_result(path: Union[str, Path]) -> Dict[str, Any]:
    """Read and validate one result file.

    Raises
    ------
    ResultError
        Missing file, invalid JSON or schema violations.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise ResultError(f"result file '{path}' could not be read ({e.strerror}): expected a JSON file "
                          f"written by `headpose bench`") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultError(f"result file '{path}' is not valid JSON ({e})") from None
    return check(data, where=str(path))

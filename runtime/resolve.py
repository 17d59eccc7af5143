"""One vocabulary for naming a model on every command: an artifact directory, an artifact id, or a model id.

``headpose run --pose``, ``headpose bench --pose/--detector/--artifact`` and ``headpose convert-matrix
--models`` all take a reference resolved by :func:`resolve_artifact`:

- an **artifact directory** (or its ``manifest.json``): used as it is;
- an **artifact id** ``{model}-{size}-{format}-{precision}`` (``mobilenetv3_small-224-tflite-int8``):
  the folder of that name in the search folders;
- a **model id** (``mobilenetv3_small``): its artifact at ``precision`` (default fp32), ``size``
  (default the registry's input size) and ``fmt`` (default tflite), looked up the same way.

Search folders, in order (:func:`search_dirs`): ``$HEADPOSE_WEIGHTS_DIR/exports`` alone when that is
set, else ``./weights/exports`` and the checkout's ``weights/exports``; then their ``matrix/``
sub-folder (``convert-matrix``'s default), the int8 artifacts the project ships (``weights/int8/``,
see weights/README.md) and the bench cache ``weights/cache/bench/<model>-<sha12>/`` (newest first). Where nothing is found, a caller that may build (``bench``, ``convert-matrix``)
passes ``build``; the runtime never does, and says which ``headpose convert`` makes it.

Runtime module: standard library + the manifest reader only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Set, Tuple

from .errors import HeadposeError, InputError, ManifestError
from .manifest import MANIFEST_NAME, artifact_id, load_manifest
from .paths import PROJECT_ROOT
from .registry import get_spec

TASK_WORD = {"head_pose": "pose", "face_detection": "detector"}


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed reference: ``path`` (a directory given as such) or ``model``/``size``/``fmt``/``precision``."""

    text: str
    path: Optional[Path] = None
    model: Optional[str] = None
    size: Optional[int] = None
    fmt: Optional[str] = None
    precision: Optional[str] = None

    @property
    def is_path(self) -> bool:
        return self.path is not None

    @property
    def id(self) -> Optional[str]:
        return None if self.model is None else artifact_id(self.model, self.size, self.fmt, self.precision)


def _looks_like_path(text: str) -> bool:
    return os.sep in text or (os.altsep or "/") in text or text.startswith(".") or text.startswith("~")


def parse_ref(text: str, precision: Optional[str] = None, size: Optional[int] = None, fmt: Optional[str] = None
              ) -> ArtifactRef:
    """Parse ``text`` (directory, artifact id or model id) with the defaults of a model id.

    Raises
    ------
    UnknownModelError
        A model id the registry does not know (with "did you mean").
    InputError
        An artifact id whose parts disagree with the given precision / size / format.
    """
    text = str(text).strip()
    p = Path(text).expanduser()
    if p.exists() or _looks_like_path(text):
        return ArtifactRef(text, path=p)
    parts = text.split("-")
    if len(parts) >= 4 and parts[1].isdigit():  # {model}-{size}-{format}-{precision}; precision may hold '-'
        model, s, f, prec = parts[0], int(parts[1]), parts[2], "-".join(parts[3:])
        get_spec(model)
        for name, given, found in (("precision", precision, prec), ("input size", size, s), ("format", fmt, f)):
            if given is not None and given != found:
                raise InputError(f"'{text}' is a {found} artifact id, but {name} {given} was asked for: give the "
                                 f"model id '{model}' to choose the {name}, or the artifact id alone")
        return ArtifactRef(text, model=model, size=s, fmt=f, precision=prec)
    spec = get_spec(text)
    return ArtifactRef(text, model=text, size=size or spec.input_size, fmt=fmt or "tflite",
                       precision=precision or "fp32")


def search_dirs() -> List[Path]:
    """The folders an artifact id is looked up in, in order (see the module docstring)."""
    env = os.environ.get("HEADPOSE_WEIGHTS_DIR")
    weights = [Path(env)] if env else [Path.cwd() / "weights", PROJECT_ROOT / "weights"]
    out: List[Path] = []
    for w in weights:
        for d in (w / "exports", w / "exports" / "matrix"):
            if d.resolve() not in [o.resolve() for o in out]:
                out.append(d)
    for w in weights:
        shipped = w / "int8"  # committed int8 pose artifacts (weights/README.md)
        if shipped.is_dir() and shipped.resolve() not in [o.resolve() for o in out]:
            out.append(shipped)
    for w in weights:
        cache = w / "cache" / "bench"
        if cache.is_dir():
            tags = sorted((t for t in cache.iterdir() if t.is_dir() and t.name != "seeded"),
                          key=lambda t: t.stat().st_mtime, reverse=True)
            out += [t for t in tags if t.resolve() not in [o.resolve() for o in out]]
    return out


def resolve_artifact(text: str, task: Optional[str] = None, precision: Optional[str] = None,
                     size: Optional[int] = None, fmt: Optional[str] = None,
                     search: Optional[Sequence[Path]] = None,
                     build: Optional[Callable[[ArtifactRef], Path]] = None) -> Path:
    """The artifact directory a command-line reference names (the one resolver of every command).

    Parameters
    ----------
    text : str
        Artifact directory, artifact id or model id.
    task : str, optional
        ``head_pose`` or ``face_detection``: a reference of the other task is refused.
    precision, size, fmt : optional
        For a model id (defaults fp32, the registry's size, tflite); for a directory or artifact id
        they must agree with it.
    search : folders, optional
        Where ids are looked up (default :func:`search_dirs`).
    build : callable, optional
        ``build(ref) -> Path`` called when nothing is found (bench / convert-matrix build there).

    Raises
    ------
    ManifestError
        Not found (naming the folders searched and the ``headpose convert`` command), a directory
        without a valid manifest, or an artifact of the wrong task / precision / size / format.
    """
    ref = parse_ref(text, precision, size, fmt)
    if ref.is_path:
        m = load_manifest(ref.path, expect_task=task)
        for name, given, found in (("precision", precision, m.precision), ("format", fmt, m.format),
                                   ("input size", size, m.input.shape[2] if len(m.input.shape or ()) >= 3 else None)):
            if given is not None and found is not None and given != found:
                raise ManifestError(f"artifact '{ref.path}' is {name} {found}, not the {given} asked for")
        return m.directory
    if task and get_spec(ref.model).task != task:
        raise ManifestError(f"'{text}' is a {get_spec(ref.model).task} model, but a {TASK_WORD.get(task, task)} "
                            f"model was expected here")
    dirs = list(search) if search is not None else search_dirs()
    for d in dirs:
        if (Path(d) / ref.id / MANIFEST_NAME).is_file():
            return load_manifest(Path(d) / ref.id, expect_task=task).directory
    if build is not None:
        return Path(build(ref))
    where = ", ".join(str(d) for d in dirs) or "(no folder)"
    raise ManifestError(f"no artifact {ref.id} (from '{text}') in {where}; build it with `headpose convert "
                        f"{ref.model} --weights PATH --format {ref.fmt} --precision {ref.precision}"
                        f"{'' if ref.size == get_spec(ref.model).input_size else f' --input-size {ref.size}'} "
                        f"--out weights/exports`, or pass its directory")


# -- the fast defaults of `headpose run` -------------------------------------------------------------

def _student_sha256s(model: str, root: Path) -> Set[str]:
    """sha256 of the project's shipped students of ``model``: ``weights/<model>_fsanet.pt`` and its
    quantisation-aware fine-tune ``weights/<model>_fsanet_qat.pt`` (what int8 artifacts are made from)."""
    from .manifest import sha256_file
    files = (root / "weights" / f"{model}_fsanet{tail}.pt" for tail in ("", "_qat"))
    return {sha256_file(p) for p in files if p.is_file()}


def gates_passed(m, root: Path = PROJECT_ROOT) -> Tuple[bool, str]:
    """Whether a default may be this artifact: ``(ok, why not)``.

    Its conversion's parity gate passed; an int8 pose artifact also passed the int8 accuracy gate
    (``quantization.int8_gate.passed``: an artifact converted without the gate does not qualify); a
    pose artifact was converted from the project's shipped student (its ``source.sha256`` is that of
    ``weights/<model>_fsanet.pt`` or of its ``_qat`` fine-tune: seeded or foreign weights never become
    a default); tflite format.
    """
    if m.format != "tflite":
        return False, f"format {m.format}"
    if (m.parity or {}).get("passed") is not True:
        return False, "its parity gate did not pass (or was not recorded)"
    if m.task == "head_pose":
        if m.precision == "int8" and ((m.quantization or {}).get("int8_gate") or {}).get("passed") is not True:
            return False, "converted without the int8 accuracy gate"
        if (m.source or {}).get("sha256") not in _student_sha256s(m.model, root):
            return False, f"not converted from the shipped student weights/{m.model}_fsanet.pt (or its _qat fine-tune)"
    return True, ""


def _machine_key() -> str:
    """What makes a speed ranking this machine's: CPU model, core count, architecture."""
    import platform
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.machine()}|{os.cpu_count()}|{cpu}"


def _model_ms(path: Path, threads: int, runs: int = 5) -> float:
    """Median ms of one batch-1 invocation of an artifact (LiteRT + XNNPACK, ``threads`` threads)."""
    import numpy as np
    from .interpreter import make_interpreter, time_invoke
    m = load_manifest(path)
    it = make_interpreter(m.model_path, num_threads=threads)
    shape = it.get_input_details()[0]["shape"]
    return float(np.median(time_invoke(it, np.zeros(shape, np.float32), runs=runs, warmup=1)))


def fastest(paths: Sequence[Path], threads: int = 1, cache: Optional[Path] = None) -> Path:
    """The fastest of ``paths`` (artifact directories of one task) on this machine.

    Each is timed once per machine (median of 5 batch-1 invocations after a warm-up; LiteRT + XNNPACK,
    ``threads`` threads): int8 is the faster precision on ARM (XNNPACK's dot-product kernels) but
    need not be on an x86 without VNNI, so the order is measured, not assumed. The ranking is kept
    in ``cache`` (JSON, keyed by the model files' sha256, threads and the machine), so later runs
    read it instead of timing again; an unwritable cache is only logged.
    """
    import hashlib
    import json
    import logging
    from .manifest import write_json_atomic
    log = logging.getLogger(__name__)
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return paths[0]
    shas = [f"{m.id}:{m.file_sha256}" for m in (load_manifest(p) for p in paths)]  # artifact + file
    key = hashlib.sha256(json.dumps([sorted(shas), threads, _machine_key()]).encode()).hexdigest()[:16]
    known = {}
    if cache is not None and cache.is_file():
        try:
            known = json.loads(cache.read_text())
        except (OSError, ValueError):
            known = {}
    ms = known.get(key)
    if not (isinstance(ms, dict) and set(ms) == set(shas)):
        ms = {}
        for sha, p in zip(shas, paths):
            try:
                ms[sha] = _model_ms(p, threads)
            except (HeadposeError, ManifestError) as e:  # a candidate that does not load is never taken
                log.warning("default candidate %s does not run here: %s", p, e)
                ms[sha] = float("inf")
        log.info("default candidates timed on this machine (ms, batch 1, %d thread(s)): %s", threads,
                 ", ".join(f"{p.name} {ms[s]:.1f}" for p, s in zip(paths, shas)))
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(cache, {**known, key: ms})
            except OSError as e:
                log.info("could not keep the default ranking in %s (%s)", cache, e)
    return min(zip(paths, shas), key=lambda ps: ms[ps[1]])[0]


def fast_default(task: str, dirs: Sequence[Path], candidates: Optional[Sequence[tuple]] = None,
                 root: Path = PROJECT_ROOT, threads: int = 1, cache: Optional[Path] = None,
                 measure: bool = True) -> Optional[Path]:
    """The fastest on this machine (:func:`fastest`) of ``candidates`` (registry ``FAST_DETECTORS`` /
    ``FAST_POSES``) found in ``dirs`` whose gates passed (:func:`gates_passed`); None when there is none
    (the caller then takes the fresh-machine default). ``measure=False`` takes the first in the
    candidates' order instead of timing them."""
    import logging
    from .registry import FAST_DETECTORS, FAST_POSES
    log = logging.getLogger(__name__)
    if candidates is None:
        candidates = FAST_DETECTORS if task == "face_detection" else FAST_POSES
    found: List[Path] = []
    for cand in candidates:
        aid = artifact_id(*cand)
        for d in dirs:
            path = Path(d) / aid
            if not (path / MANIFEST_NAME).is_file():
                continue
            try:
                m = load_manifest(path, expect_task=task)
            except ManifestError as e:
                log.info("default candidate %s skipped: %s", path, e)
                continue
            ok, why = gates_passed(m, root)
            if ok:
                found.append(m.directory)
                break  # the first folder holding this candidate
            log.info("default candidate %s skipped: %s", path, why)
    if not found:
        return None
    return fastest(found, threads, cache) if measure else found[0]

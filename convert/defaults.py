"""The embedded default: what ``headpose run`` uses with no model arguments on a fresh machine.

* Detector: SCRFD-2.5G with keypoints (640x640 ONNX) from the ``scrfd==0.3.0`` source distribution on
  PyPI (Apache-2.0 packaging of InsightFace's model). ``./install.sh`` fetches it with pip (a package
  registry, checksummed) into ``weights/cache/``; nothing downloads at run or test time.
* Pose: the project's own distilled student ``weights/mobilenetv3_small_fsanet.pt``.
* Sample source: ``solvay_conference_1927.jpg`` (29 real faces) from the same package.

The TFLite artifacts are built on first use (they are not committed) into ``weights/exports/``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..runtime.errors import HeadposeError
from ..runtime.manifest import artifact_id, sha256_file
from ..runtime.paths import PROJECT_ROOT
from ..runtime.registry import DEFAULT_DETECTOR, DEFAULT_POSE, DEFAULT_POSE_WEIGHTS, DEFAULT_SAMPLE
from . import staging

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(os.environ.get("HEADPOSE_WEIGHTS_DIR", PROJECT_ROOT / "weights"))

SCRFD_PACKAGE = {
    "name": "scrfd",
    "version": "0.3.0",
    "sdist": "scrfd-0.3.0.tar.gz",
    "sdist_sha256": "35855c664d565492aab0068f1c64b4957a15ca6cd106b9c8b1642d67cfeeb5fc",
    "members": {
        "models/scrfd.onnx": "9c162a817c7dd32d35d1f1c6ae6445032d6e73c6c5fe61d8b5b663ba8bc86b30",
        "images/solvay_conference_1927.jpg": "ae76a5be54f53cca50074a0d1ac8653187154d264fc58ed928e1b92c27e17e2a",
        "images/newton.png": "91f24ec62161d131632ea78038f5fda8319abec1c78b82795be891f349e9c05a",
        "images/gauss.png": "0ecd92b4e17755deedabd46f416558c15abf06f6385d50be4486d45987c95f9e",
        "LICENSE": None,
    },
}
# The defaults themselves are registry facts (runtime/registry.py), shared with `headpose run`.


def package_dir(weights_dir: Optional[Path] = None) -> Path:
    """Where the verified members of the scrfd package live: ``weights/cache/scrfd-0.3.0/``."""
    return Path(weights_dir or WEIGHTS_DIR) / "cache" / f"{SCRFD_PACKAGE['name']}-{SCRFD_PACKAGE['version']}"


def _verified(root: Path) -> bool:
    return all((root / m).is_file() and (want is None or sha256_file(root / m) == want)
               for m, want in SCRFD_PACKAGE["members"].items())


def fetch_scrfd_package(weights_dir: Optional[Path] = None, sdist: Optional[Path] = None) -> Path:
    """Fetch (with pip) and verify the ``scrfd==0.3.0`` sdist, extract the model and sample images.

    Parameters
    ----------
    sdist : path, optional
        An already downloaded ``scrfd-0.3.0.tar.gz``; otherwise ``pip download`` fetches it.

    Returns
    -------
    Path
        The directory holding ``models/scrfd.onnx`` and ``images/*`` (checksums verified).

    Raises
    ------
    HeadposeError
        When pip cannot fetch it or a checksum does not match.
    """
    dest = package_dir(weights_dir)
    if _verified(dest):
        return dest
    installed = package_dir(PROJECT_ROOT / "weights")  # what ./install.sh fetched into the checkout
    if sdist is None and _verified(installed):
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(installed, dest, dirs_exist_ok=True)
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if sdist is None:
            spec = f"{SCRFD_PACKAGE['name']}=={SCRFD_PACKAGE['version']}"
            log.info("fetching %s (sdist) from the package registry", spec)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                   "--disable-pip-version-check", spec, "-d", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            sdist = tmp / SCRFD_PACKAGE["sdist"]
            if r.returncode != 0 or not sdist.is_file():
                raise HeadposeError(f"could not fetch {spec} with pip ({r.stderr.strip()[-300:]}); the default "
                                    f"detector comes from that package: check the package index is reachable, "
                                    f"or pass --detector/--pose artifacts")
        got = sha256_file(Path(sdist))
        if got != SCRFD_PACKAGE["sdist_sha256"]:
            raise HeadposeError(f"{sdist}: sha256 {got} does not match the expected "
                                f"{SCRFD_PACKAGE['sdist_sha256']}; refusing to use it")
        stage = tmp / "stage"
        prefix = f"{SCRFD_PACKAGE['name']}-{SCRFD_PACKAGE['version']}/"
        with tarfile.open(sdist, "r:gz") as tar:
            for member, want in SCRFD_PACKAGE["members"].items():
                f = tar.extractfile(prefix + member)
                if f is None:
                    raise HeadposeError(f"{sdist} lacks {member}")
                out = stage / member
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(f.read())
                if want is not None and sha256_file(out) != want:
                    raise HeadposeError(f"{member} in {sdist}: sha256 does not match the expected {want}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging.publish(stage, dest, force=True)  # the one directory publish (the old one back if it fails)
    log.info("scrfd package verified in %s", dest)
    return dest


def default_paths(weights_dir: Optional[Path] = None) -> Dict[str, Path]:
    """Paths of the default detector/pose artifacts, the student checkpoint and the sample image."""
    w = Path(weights_dir or WEIGHTS_DIR)
    return {
        "detector": w / "exports" / artifact_id(*DEFAULT_DETECTOR),
        "pose": w / "exports" / artifact_id(*DEFAULT_POSE),
        "pose_weights": PROJECT_ROOT / "weights" / DEFAULT_POSE_WEIGHTS,
        "sample": w / DEFAULT_SAMPLE,
        "package": package_dir(w),
    }


def ensure_default_artifacts(weights_dir: Optional[Path] = None) -> Tuple[Path, Path]:
    """Build the default detector and pose artifacts if they are missing; return their directories."""
    from .pipeline import convert
    p = default_paths(weights_dir)
    pkg = fetch_scrfd_package(weights_dir)
    calib = pkg / "images"  # real photos for the parity gate (fp32 needs no calibration)
    detector_onnx = pkg / "models" / "scrfd.onnx"
    if not (p["detector"] / "manifest.json").is_file():
        log.info("building the default detector %s (first use)", p["detector"].name)
        convert(DEFAULT_DETECTOR[0], detector_onnx, fmt=DEFAULT_DETECTOR[2], precision=DEFAULT_DETECTOR[3],
                calib=calib, input_size=DEFAULT_DETECTOR[1], out_dir=p["detector"].parent, detector=detector_onnx)
    if not (p["pose"] / "manifest.json").is_file():
        if not p["pose_weights"].is_file():
            raise HeadposeError(f"the shipped student {p['pose_weights']} is missing from this checkout")
        log.info("building the default pose model %s (first use)", p["pose"].name)
        convert(DEFAULT_POSE[0], p["pose_weights"], fmt=DEFAULT_POSE[2], precision=DEFAULT_POSE[3], calib=calib,
                input_size=DEFAULT_POSE[1], out_dir=p["pose"].parent, detector=detector_onnx)
    return p["detector"], p["pose"]

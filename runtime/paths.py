"""Where things are: the checkout, its weights, and the shared data folder (one lookup each).

``HEADPOSE_SHARED`` names the shared data folder (``data/``, ``weights/``); unset, it is the
``shared`` folder next to the checkout. Every room reads these names from here.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PROJECT_ROOT / "weights"
SHARED = Path(os.environ.get("HEADPOSE_SHARED", PROJECT_ROOT.parent / "shared"))
SHARED_WEIGHTS = SHARED / "weights"
SHARED_VIDEO = SHARED / "data" / "in_video.mp4"

"""``bench-report``'s per-stage plots: ``stage_<stage>.png``, one per pipeline stage, every device in one plot.

Each plot shows the stage's mean and p99 per configuration (latest run of it per device), one bar
per device, with the frame budget (1000 / ``fps_min`` ms: a stage above it alone breaks the FPS
budget) as a red line: where the frame time goes, device by device.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

STAGES = ("capture", "detector_preprocess", "detector", "decode", "crop", "pose", "smoothing", "draw")


def stage_table(results: Sequence[dict]) -> "OrderedDict[Tuple[str, str], Dict[str, dict]]":
    """(device, pipeline key) -> stages of the latest run of that configuration on that device."""
    latest: "OrderedDict[Tuple[str, str], Dict[str, dict]]" = OrderedDict()
    for r in sorted(results, key=lambda x: (str(x.get("created_utc", "")), str(x.get("run_id", "")))):
        for p in r.get("pipelines", []) or []:
            if p.get("stages"):
                latest[(r["device"]["name"], p["key"])] = p["stages"]
    return latest


def render_stage_plots(results: Sequence[dict], out_dir: Path, plt, save) -> List[Path]:
    budgets = results[0].get("budgets", {}) if results else {}
    frame_budget = 1000.0 / float(budgets.get("fps_min", 30.0))
    table = stage_table(results)
    devices = list(OrderedDict.fromkeys(d for d, _ in table))
    keys = list(OrderedDict.fromkeys(k for _, k in table))
    written = []
    for stage in STAGES:
        if not any(stage in s for s in table.values()):
            continue
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(keys) * max(1, len(devices)) + 1.5), dpi=80)
        h = 0.8 / max(1, len(devices))
        for j, dev in enumerate(devices):
            ys = [i + j * h for i in range(len(keys))]
            st = [table.get((dev, k), {}).get(stage) or {} for k in keys]
            ax.barh(ys, [float(s.get("mean", 0.0) or 0.0) for s in st], height=h, label=f"{dev} mean")
            ax.scatter([float(s.get("p99", 0.0) or 0.0) for s in st], ys, marker="|", s=80, color="black",
                       label="p99" if j == 0 else None)
        ax.set_yticks([i + h * (len(devices) - 1) / 2 for i in range(len(keys))])
        ax.set_yticklabels([k.replace("|", " ") for k in keys], fontsize=7)
        ax.axvline(frame_budget, color="red", linestyle="--", linewidth=1,
                   label=f"frame budget {frame_budget:.1f} ms ({budgets.get('fps_min', 30):g} FPS)")
        ax.set_xlabel(f"{stage} per frame (ms): mean bar, p99 tick")
        ax.set_title(f"stage {stage}, every device")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(save(fig, Path(out_dir) / f"stage_{stage}.png"))
        plt.close(fig)
    return written

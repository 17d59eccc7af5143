"""``headpose bench-report``: merge result files of many devices into one table, plots and diffs.

Outputs (under ``--out``):

- ``report.md``: pipelines (device x model x precision x threads x detect-every: p50/p99, FPS,
  verdict), model-only latency, the speed-up ratios each run measured against its ONNX Runtime
  baseline, and a regression/improvement diff wherever two runs of one device measured the same
  configuration.
- ``report.csv``: every row of the pipeline and model-only tables (``kind`` column).
- ``latency_<device>.png`` (end-to-end latency distribution per configuration),
  ``model_latency_<device>.png`` (model-only latency per artifact configuration) and
  ``fps_per_device.png``, when matplotlib (the ``bench`` extra) is installed; the text outputs
  never need it.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from ..runtime.manifest import write_atomic
from .schema import load_result

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD_PCT = 10.0


# -- rows ------------------------------------------------------------------------------------------
def _run_label(r: dict) -> str:
    return r.get("run_id") or r.get("created_utc") or "run"


def pipeline_rows(results: Sequence[dict]) -> List[Dict[str, object]]:
    """One flat row per pipeline of every result (device x config), in file order."""
    rows = []
    for r in results:
        upstream = {c.get("candidate"): c.get("fps_ratio") for c in r.get("comparisons", []) or []}
        for p in r.get("pipelines", []) or []:
            v = p.get("verdict") or {}
            bound = p.get("bound") or {}
            rows.append(OrderedDict(
                kind="pipeline", device=r["device"]["name"], run=_run_label(r), created=r.get("created_utc", ""),
                key=p["key"], backend=p["backend"], model=p["model"], precision=p["precision"],
                threads=p["threads"], detect_every=p["detect_every"], xnnpack=p.get("xnnpack"),
                frames=p["frames"], faces_per_frame=(p.get("faces_per_frame") or {}).get("mean"),
                p50_ms=p["end_to_end"]["p50"], p99_ms=p["end_to_end"]["p99"],
                mean_ms=p["end_to_end"].get("mean"), fps=p["fps"], verdict=v.get("overall", "n/a"),
                pipelined=bool(p.get("pipelined", False)), bound_ms=bound.get("ms_per_frame"),
                efficiency=p.get("efficiency"), vs_upstream=upstream.get(p["key"]),
                samples=p.get("samples_ms")))
    return rows


def latency_rows(results: Sequence[dict]) -> List[Dict[str, object]]:
    """One flat row per model-only measurement of every result."""
    rows = []
    for r in results:
        for e in r.get("model_latency", []) or []:
            xnn = e.get("xnnpack")
            key = e.get("key") or (f"{e['runtime']}|{e['model']}|{e['precision']}|t{e['threads']}|"
                                   f"{ {True: 'xnn', False: 'noxnn', None: '-'}.get(xnn, '-') }")
            rows.append(OrderedDict(
                kind="model", device=r["device"]["name"], run=_run_label(r), created=r.get("created_utc", ""),
                key=key, backend=e["runtime"], model=e["model"], precision=e["precision"], threads=e["threads"],
                detect_every=None, xnnpack=xnn, batch=e.get("batch", 1), frames=None, faces_per_frame=None,
                p50_ms=e["stats"]["p50"], p99_ms=e["stats"]["p99"], mean_ms=e["stats"].get("mean"),
                fps=None, verdict=None, samples=e.get("samples_ms")))
    return rows


def diff_rows(rows: Sequence[Dict[str, object]], threshold_pct: float = DEFAULT_THRESHOLD_PCT
              ) -> List[Dict[str, object]]:
    """Consecutive runs of the same configuration on the same device, compared.

    Parameters
    ----------
    rows : rows of :func:`pipeline_rows` / :func:`latency_rows`
    threshold_pct : float
        A p50 change beyond +/- this many percent is a regression (slower) or an improvement
        (faster); within it, ``same``.

    Returns
    -------
    list of dict
        ``device, kind, key, old_run, new_run, old_p50, new_p50, change_pct, old_p99, new_p99,
        old_fps, new_fps, status`` with status ``regression`` / ``improvement`` / ``same``.
    """
    groups: Dict[Tuple, List[Dict[str, object]]] = OrderedDict()
    for row in rows:
        groups.setdefault((row["device"], row["kind"], row["key"]), []).append(row)
    out = []
    for (device, kind, key), rs in groups.items():
        rs = sorted(rs, key=lambda x: (str(x["created"]), str(x["run"])))
        for old, new in zip(rs, rs[1:]):
            if old["run"] == new["run"]:
                continue
            change = 100.0 * (float(new["p50_ms"]) - float(old["p50_ms"])) / float(old["p50_ms"])
            status = ("regression" if change > threshold_pct else "improvement" if change < -threshold_pct
                      else "same")
            out.append(OrderedDict(device=device, kind=kind, key=key, old_run=old["run"], new_run=new["run"],
                                   old_p50=old["p50_ms"], new_p50=new["p50_ms"], change_pct=round(change, 1),
                                   old_p99=old["p99_ms"], new_p99=new["p99_ms"], old_fps=old["fps"],
                                   new_fps=new["fps"], status=status))
    return out


# -- text ------------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table (``|`` in cells escaped)."""
    def cell(v):
        return _fmt(v).replace("|", "\\|")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width table for the terminal."""
    cells = [list(header)] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


PIPE_HEADER = ("device", "backend", "model", "precision", "threads", "detect every", "pipelined", "p50 ms",
               "p99 ms", "FPS", "faces/frame", "bound ms", "efficiency", "x upstream", "verdict", "run")
MODEL_HEADER = ("device", "runtime", "model", "precision", "threads", "XNNPACK", "batch", "p50 ms", "p99 ms",
                "mean ms", "run")


def pipe_cells(r) -> list:
    return [r["device"], r["backend"], r["model"], r["precision"], r["threads"], r["detect_every"],
            r.get("pipelined", False), r["p50_ms"], r["p99_ms"], r["fps"], r["faces_per_frame"], r.get("bound_ms"),
            r.get("efficiency"), r.get("vs_upstream"), r["verdict"], r["run"]]


def model_cells(r) -> list:
    return [r["device"], r["backend"], r["model"], r["precision"], r["threads"], r["xnnpack"], r.get("batch", 1),
            r["p50_ms"], r["p99_ms"], r["mean_ms"], r["run"]]


def comparison_rows(results: Sequence[dict]) -> List[List[object]]:
    """The speed-up ratios each run recorded (baseline p50 / candidate p50, FPS ratio)."""
    rows = []
    for r in results:
        for c in r.get("comparisons", []) or []:
            rows.append([r["device"]["name"], c["candidate"], c["baseline"], c.get("speedup_p50"),
                         c.get("speedup_mean"), c.get("fps_ratio"), _run_label(r)])
    return rows


def render_markdown(results: Sequence[dict], threshold_pct: float = DEFAULT_THRESHOLD_PCT,
                    plots: Sequence[str] = ()) -> str:
    """The whole ``report.md``."""
    prow, mrow = pipeline_rows(results), latency_rows(results)
    budgets = results[0].get("budgets", {}) if results else {}
    parts = ["# headpose-edge benchmark report", ""]
    parts.append(f"{len(results)} run(s) from {len({r['device']['name'] for r in results})} device(s). Budget: "
                 f"{budgets.get('fps_min', 30):g}+ FPS and p99 end-to-end latency under "
                 f"{budgets.get('p99_ms_max', 100):g} ms (verdict PASS only when both hold).")
    parts += ["", "## Devices", ""]
    seen = OrderedDict()
    for r in results:
        d = r["device"]
        seen[(_run_label(r))] = [d["name"], d.get("cpu"), d.get("cores"), d.get("arch"), d.get("os"),
                                 (d.get("packages") or {}).get("litert"), (d.get("packages") or {}).get("onnxruntime"),
                                 " ".join(str(x) for x in ((r.get("load") or {}).get("loadavg_start") or [])) or None,
                                 _run_label(r)]
    parts.append(markdown_table(("device", "CPU", "cores", "arch", "OS", "LiteRT", "ONNX Runtime",
                                 "load avg at start", "run"), list(seen.values())))
    if prow:
        parts += ["", "## End-to-end pipelines", "",
                  "bound ms: the model-only bound of the same frames (video decode + the detector's model-only p50 "
                  "on the frames it ran + faces x the pose model's per face, from the run's own model-only "
                  "timings); efficiency = bound / measured ms per frame (1000 / FPS), above 1 only when stages "
                  "overlap (pipelined); x upstream = FPS / the upstream-style ONNX Runtime loop's at the same "
                  "threads, same frames; '-' where the run did not measure it.", "",
                  markdown_table(PIPE_HEADER, [pipe_cells(r) for r in prow])]
    comp = comparison_rows(results)
    if comp:
        parts += ["", "## Speed-up against the ONNX Runtime pipeline (same run, same frames)", "",
                  "Ratio > 1: the candidate is faster than the baseline.", "",
                  markdown_table(("device", "candidate", "baseline", "p50 speed-up", "mean speed-up",
                                  "FPS ratio", "run"), comp)]
    if mrow:
        parts += ["", "## Model-only latency", "", markdown_table(MODEL_HEADER, [model_cells(r) for r in mrow])]
    diffs = diff_rows(prow + mrow, threshold_pct)
    parts += ["", f"## Regressions and improvements (same device, same configuration; threshold "
                  f"+/-{threshold_pct:g} % on p50)", ""]
    if diffs:
        parts.append(markdown_table(("device", "kind", "configuration", "old run", "new run", "old p50", "new p50",
                                     "change %", "old p99", "new p99", "status"),
                                    [[d["device"], d["kind"], d["key"], d["old_run"], d["new_run"], d["old_p50"],
                                      d["new_p50"], d["change_pct"], d["old_p99"], d["new_p99"], d["status"]]
                                     for d in diffs]))
    else:
        parts.append("No configuration was measured twice on one device.")
    sus = [(r["device"]["name"], r["sustained"]) for r in results if r.get("sustained")]
    if sus:
        parts += ["", "## Sustained runs", ""]
        parts.append(markdown_table(("device", "configuration", "duration s", "FPS first", "FPS last", "FPS drop %",
                                     "temp first C", "temp max C", "MHz first", "MHz last", "throttled"),
                                    [[n, s.get("key"), s.get("duration_s"), s["summary"].get("fps_first"),
                                      s["summary"].get("fps_last"), s["summary"].get("fps_drop_pct"),
                                      s["summary"].get("temp_first_c"), s["summary"].get("temp_max_c"),
                                      s["summary"].get("mhz_first"), s["summary"].get("mhz_last"),
                                      s["summary"].get("throttled_seen")] for n, s in sus]))
    notes = [(r["device"]["name"], _run_label(r), n) for r in results for n in (r.get("notes") or [])]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {run}: {n}" for _, run, n in notes]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    return "\n".join(parts) + "\n"


CSV_FIELDS = ("kind", "device", "run", "created", "key", "backend", "model", "precision", "threads",
              "detect_every", "xnnpack", "batch", "frames", "faces_per_frame", "p50_ms", "p99_ms", "mean_ms", "fps", "verdict",
              "pipelined", "bound_ms", "efficiency", "vs_upstream")


def render_csv(results: Sequence[dict]) -> str:
    """``report.csv``: pipeline and model-only rows with the fields of :data:`CSV_FIELDS`."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in pipeline_rows(results) + latency_rows(results):
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    return buf.getvalue()


# -- plots -----------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "device"


def plotting_available() -> bool:
    """Whether matplotlib (the ``bench`` extra) can be imported."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def render_plots(results: Sequence[dict], out_dir: Path) -> List[Path]:
    """PNG plots; an empty list (with a warning) when matplotlib is not installed.

    - ``latency_<device>.png``: box plots of end-to-end latency per configuration (latest run of
      each configuration on that device), with the p99 budget line.
    - ``model_latency_<device>.png``: box plots of model-only latency per runtime/model/precision/threads.
    - ``fps_per_device.png``: FPS per configuration, one bar per device, with the FPS budget line.
    """
    if not plotting_available():
        log.warning("matplotlib is not installed: no PNG plots (pip install 'headpose-edge[bench]')")
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    budgets = results[0].get("budgets", {}) if results else {}
    rows = pipeline_rows(results)
    written: List[Path] = []
    latest: Dict[Tuple[str, str], Dict[str, object]] = OrderedDict()
    for r in sorted(rows, key=lambda x: (str(x["created"]), str(x["run"]))):
        latest[(r["device"], r["key"])] = r
    devices = list(OrderedDict.fromkeys(d for d, _ in latest))
    for dev in devices:
        rs = [r for (d, _), r in latest.items() if d == dev and r.get("samples")]
        if not rs:
            continue
        labels = [f"{r['backend']} {r['model']} {r['precision']} t{r['threads']} de{r['detect_every']}" for r in rs]
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rs) + 1.5), dpi=80)
        _boxplot(ax, [r["samples"] for r in rs], labels)
        ax.axvline(budgets.get("p99_ms_max", 100), color="red", linestyle="--", linewidth=1, label="p99 budget")
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency per frame (ms, log scale); whiskers p1-p99")
        ax.set_title(f"{dev}: latency per configuration")
        ax.legend(loc="lower right", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"latency_{_slug(dev)}.png"))
        plt.close(fig)
    mlatest: Dict[Tuple[str, str], Dict[str, object]] = OrderedDict()
    for r in sorted(latency_rows(results), key=lambda x: (str(x["created"]), str(x["run"]))):
        mlatest[(r["device"], r["key"])] = r
    for dev in list(OrderedDict.fromkeys(d for d, _ in mlatest)):
        rs = [r for (d, _), r in mlatest.items() if d == dev and r.get("samples")]
        if not rs:
            continue
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(rs) + 1.5), dpi=80)
        _boxplot(ax, [r["samples"] for r in rs], [r["key"].replace("|", " ") for r in rs])
        ax.set_xscale("log")
        ax.set_xlabel("model-only latency per call (ms, log scale); whiskers p1-p99")
        ax.set_title(f"{dev}: model-only latency")
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        written.append(_save(fig, out_dir / f"model_latency_{_slug(dev)}.png"))
        plt.close(fig)
    if latest:
        keys = list(OrderedDict.fromkeys(k for _, k in latest))
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(keys) * max(1, len(devices)) + 1.5), dpi=80)
        h = 0.8 / max(1, len(devices))
        for j, dev in enumerate(devices):
            ys = [i + j * h for i in range(len(keys))]
            vals = [float(latest[(dev, k)]["fps"]) if (dev, k) in latest else 0.0 for k in keys]
            ax.barh(ys, vals, height=h, label=dev)
        ax.set_yticks([i + h * (len(devices) - 1) / 2 for i in range(len(keys))])
        ax.set_yticklabels([k.replace("|", " ") for k in keys], fontsize=7)
        ax.axvline(budgets.get("fps_min", 30), color="red", linestyle="--", linewidth=1, label="FPS budget")
        ax.set_xlabel("frames per second (end to end)")
        ax.set_title("FPS per configuration and device")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "fps_per_device.png"))
        plt.close(fig)
    from .stage_plots import render_stage_plots  # stage_<stage>.png: one plot per stage, every device
    written += render_stage_plots(results, out_dir, plt, _save)
    return written


def _boxplot(ax, data: List[List[float]], labels: List[str]) -> None:
    """Horizontal box plots, whiskers at p1/p99, labels set on the axis (works across matplotlib versions)."""
    try:  # matplotlib >= 3.10 names the orientation; older versions take vert=False
        ax.boxplot(data, orientation="horizontal", whis=(1, 99), showfliers=False)
    except TypeError:
        ax.boxplot(data, vert=False, whis=(1, 99), showfliers=False)
    ax.set_yticks(range(1, len(labels) + 1))
    ax.set_yticklabels(labels)


def _save(fig, path: Path) -> Path:
    """Save a figure as PNG with the one atomic write (:func:`~headpose.runtime.manifest.write_atomic`)."""
    return write_atomic(path, lambda f: fig.savefig(f, format="png"))


def write_text_atomic(path: Path, text: str) -> None:
    """Write text under a temporary name next to ``path``, then rename it into place."""
    write_atomic(path, text)


def build_report(paths: Sequence, out_dir, threshold_pct: float = DEFAULT_THRESHOLD_PCT, plots: bool = True
                 ) -> Dict[str, object]:
    """Load result files, write ``report.md``, ``report.csv`` and the PNGs into ``out_dir``.

    Returns
    -------
    dict
        ``markdown``, ``csv`` (paths), ``plots`` (list of paths), ``results`` (loaded), ``diffs``.
    """
    from ..runtime.errors import InputError
    if not paths:
        raise InputError("no result files given: expected one or more JSON files written by `headpose bench`")
    results = [load_result(p) for p in paths]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = render_plots(results, out) if plots else []
    md_path, csv_path = out / "report.md", out / "report.csv"
    write_text_atomic(md_path, render_markdown(results, threshold_pct, [str(p) for p in pngs]))
    write_text_atomic(csv_path, render_csv(results))
    diffs = diff_rows(pipeline_rows(results) + latency_rows(results), threshold_pct)
    return {"markdown": md_path, "csv": csv_path, "plots": pngs, "results": results, "diffs": diffs}

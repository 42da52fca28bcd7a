"""Per-run evaluation summary: `report.json`, `report.md` and plots (matplotlib, Agg backend).

The report holds the metrics beside trivial baselines computed from the ground truth itself, the
parse-failure counts / rates / examples per task, the decode failures, sample counts, timing, the
resolved config with the model section that was built, and the checkpoint(s) used. Per sample
(TVG, DVC, VHD): id, video, query, ground truth, parsed prediction, IoU or score, parse status -
the first rows in `report.md`, all in `samples.csv` and `samples.jsonl`. Plots:

* `timelines.html` (TVG, DVC): every video / query, ground truth above prediction, the video's end
  and, for DVC, the captions (hover a segment; listed under each row);
* `timeline.png` (TVG, DVC): the same for `eval.plot_samples` of them, with a legend;
* `iou_hist.png` (TVG): the histogram of the per-query IoU;
* `saliency.png` (VHD): predicted vs ground-truth (mean annotator) saliency per 2-s clip.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from timechat.eval.tasks.base import TaskOutput, spread
from timechat.io import atomic_write_text
from timechat.stats import IssueStats


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


GT_COLOR, PRED_COLOR, END_COLOR = "tab:green", "tab:orange", "grey"


def plot_timelines(timelines: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Ground-truth (green) vs predicted (orange) segments, one row pair per video/query, the video's
    end as a grey tick; a legend says which is which.

    Returns:
        The PNG path, or None when there is nothing to draw.
    """
    if not timelines:
        return None
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _pyplot()
    n = len(timelines)
    fig, ax = plt.subplots(figsize=(10, 0.8 * n + 1.6))
    labels, ticks = [], []
    xmax = 1.0
    for i, t in enumerate(timelines):
        y = n - 1 - i
        for s, e in t.get("gt") or []:
            ax.broken_barh([(s, max(e - s, 0.05))], (y + 0.05, 0.4), color=GT_COLOR, edgecolor="white")
            xmax = max(xmax, e)
        for s, e in t.get("pred") or []:
            ax.broken_barh([(s, max(e - s, 0.05))], (y - 0.45, 0.4), color=PRED_COLOR, edgecolor="white")
            xmax = max(xmax, e)
        if t.get("duration"):
            ax.plot([t["duration"], t["duration"]], [y - 0.5, y + 0.5], color=END_COLOR, lw=1.5)
            xmax = max(xmax, float(t["duration"]))
        labels.append(str(t.get("label", i)))
        ticks.append(y)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlim(0, xmax * 1.05)
    ax.set_xlabel("seconds")
    ax.legend(handles=[Patch(color=GT_COLOR, label="ground truth"), Patch(color=PRED_COLOR, label="prediction"),
                       Line2D([0], [0], color=END_COLOR, lw=1.5, label="video end")],
              loc="upper center", bbox_to_anchor=(0.5, -0.6 / (0.8 * n + 1.6) - 0.08), ncol=3, fontsize=7, frameon=False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def timelines_html(timelines: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Every video / query on one HTML page: an SVG bar per row (ground truth above prediction, the
    video's end), the captions of DVC segments as tooltips and listed beside the bars.

    Returns:
        The HTML path, or None when there is nothing to draw.
    """
    if not timelines:
        return None
    width, bar = 720.0, 12
    rows = []
    for t in timelines:
        ends = [float(t["duration"])] if t.get("duration") else []
        ends += [float(e) for _, e in (t.get("gt") or []) + (t.get("pred") or [])]
        span = max(ends + [1.0])
        scale = width / span

        def rects(segments, captions, y, color):
            out = []
            for k, (s, e) in enumerate(segments or []):
                x0, x1 = sorted((float(s), float(e)))
                tip = f"{x0:.1f}-{x1:.1f} s" + (f": {captions[k]}" if k < len(captions) else "")
                out.append(f'<rect x="{x0 * scale:.1f}" y="{y}" width="{max((x1 - x0) * scale, 1.5):.1f}" '
                           f'height="{bar}" fill="{color}"><title>{html.escape(tip)}</title></rect>')
            return out

        gt_caps, pred_caps = t.get("gt_captions") or [], t.get("pred_captions") or []
        svg = rects(t.get("gt"), gt_caps, 2, "#2ca02c") + rects(t.get("pred"), pred_caps, 4 + bar, "#ff7f0e")
        if t.get("duration"):
            x = float(t["duration"]) * scale
            svg.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="0" y2="{2 * bar + 6}" stroke="grey" stroke-width="2">'
                       f'<title>video end {float(t["duration"]):.1f} s</title></line>')
        caps = ""
        if gt_caps or pred_caps:
            def listing(segments, captions):
                return "".join(f"<li>{float(s):.1f}-{float(e):.1f} s: {html.escape(str(c))}</li>"
                               for (s, e), c in zip(segments or [], captions))

            caps = (f'<div class="caps"><div><b>ground truth</b><ol>{listing(t.get("gt"), gt_caps)}</ol></div>'
                    f'<div><b>prediction</b><ol>{listing(t.get("pred"), pred_caps)}</ol></div></div>')
        end = f'{float(t["duration"]):.1f} s' if t.get("duration") else "unknown length"
        rows.append(f'<div class="row"><div class="label">{html.escape(str(t.get("label", "")))} '
                    f'<span class="end">({end})</span></div>'
                    f'<svg width="{width + 4:.0f}" height="{2 * bar + 8}">{"".join(svg)}</svg>{caps}</div>')
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>
body {{ font-family: sans-serif; font-size: 13px; }} .row {{ margin: 6px 0 10px; }}
.label {{ margin-bottom: 2px; }} .end {{ color: grey; }} svg {{ background: #f6f6f6; }}
.caps {{ display: flex; gap: 24px; font-size: 12px; }} .caps ol {{ margin: 2px 0; }}
.key span {{ display: inline-block; width: 14px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body><h2>{html.escape(title)}</h2>
<p class="key">{len(timelines)} rows, each scaled to its own video.<span style="background:#2ca02c"></span>ground truth
<span style="background:#ff7f0e"></span>prediction<span style="background:grey;width:3px"></span>video end
(hover a segment for its times{' and caption' if any(t.get('gt_captions') for t in timelines) else ''})</p>
{chr(10).join(rows)}
</body></html>
"""
    atomic_write_text(path, page)
    return str(path)


def plot_iou_histogram(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Histogram of the per-query IoU (TVG), with the R1 thresholds marked."""
    ious = [r["score"] for r in rows if r.get("score_name") == "IoU" and r.get("score") is not None]
    if not ious:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(ious, bins=[i / 20 for i in range(21)], color=PRED_COLOR, edgecolor="white")
    for t in (0.3, 0.5, 0.7):
        ax.axvline(t, color=END_COLOR, lw=0.8, ls="--")
    ax.set_xlabel("IoU with the ground truth (dashed: R1 thresholds 0.3 / 0.5 / 0.7)")
    ax.set_ylabel("queries")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def plot_saliency(saliency: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Per query: predicted and ground-truth saliency per clip (one small panel each)."""
    if not saliency:
        return None
    plt = _pyplot()
    n = len(saliency)
    fig, axes = plt.subplots(n, 1, figsize=(9, 1.6 * n + 0.6), squeeze=False)
    for ax, s in zip(axes[:, 0], saliency):
        x = list(range(len(s["gt"])))
        ax.bar(x, s["gt"], color="tab:green", alpha=0.5, label="gt (mean of annotators)")
        ax.plot(list(range(len(s["pred"]))), s["pred"], color="tab:orange", marker=".", label="prediction")
        ax.set_title(str(s.get("label", "")), fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("2-s clip index")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def parse_failure_table(stats: Mapping[str, IssueStats]) -> dict[str, dict[str, Any]]:
    """``{task: {"count", "unparseable", "rate", "reasons", "examples"}}`` for every task with answers.

    Tasks in name order, reasons sorted, examples ``{"id", "reason", "text"}`` in order of arrival.
    """
    return {
        task: {
            "count": s.attempts,
            "unparseable": s.failures,
            "rate": s.failure_rate,
            "reasons": dict(sorted(s.by_reason.items())),
            "examples": list(s.samples),
        }
        for task, s in sorted(stats.items())
        if s.attempts
    }


def build_report(
    task: str,
    output: TaskOutput,
    *,
    config: dict[str, Any],
    checkpoints: Sequence[dict[str, Any]],
    timing: dict[str, Any],
    inference: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON-serialisable report dict (see `write_report`).

    `provenance`: where the model section came from (`config` or a checkpoint's config.yaml) and
    the checkpoint actually loaded.
    """
    parse = parse_failure_table(output.parse_stats)
    total = sum(v["count"] for v in parse.values())
    bad = sum(v["unparseable"] for v in parse.values())
    return {
        "task": task,
        "metrics": output.metrics,
        "baselines": output.baselines,
        "counts": output.counts,
        "provenance": provenance or {},
        "per_sample": {"rows": len(output.rows), "score": output.rows[0].get("score_name") if output.rows else None,
                       "mean_score": _mean([r.get("score") for r in output.rows])},
        "parse_failures": {"total": bad, "parsed": total, "rate": bad / total if total else 0.0, "per_task": parse},
        "decode_failures": {"count": output.counts.get("decode_failures", 0), "examples": output.decode_failures},
        "files": output.files,
        "notes": output.notes,
        "checkpoints": list(checkpoints),
        "timing": timing,
        "inference": inference or {},
        "config": config,
    }


def _mean(values: Sequence[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(nums) / len(nums) if nums else None


MD_SAMPLE_ROWS = 20
"""Per-sample rows shown in report.md (all of them are in samples.csv / samples.jsonl)."""
SAMPLE_FIELDS = ("id", "video", "query", "gt", "pred", "score", "status", "duration", "answer")


def _cell(v: Any, limit: int = 80) -> str:
    if isinstance(v, float):
        text = f"{v:.2f}"
    elif isinstance(v, (list, tuple)):
        text = json.dumps(_rounded(v))
    else:
        text = "" if v is None else str(v)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rounded(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 2)
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _metrics_table(report: dict[str, Any]) -> list[str]:
    names = list(report.get("baselines") or {})
    base = report.get("baselines") or {}
    lines = ["| metric | model | " + " | ".join(f"baseline: {n}" for n in names) + (" |" if names else ""),
             "|---|---|" + "---|" * len(names)]
    keys = list(report["metrics"]) + [k for n in names for k in base[n] if k not in report["metrics"]]
    for k in dict.fromkeys(keys):
        row = [k, _fmt(report["metrics"][k]) if k in report["metrics"] else ""]
        row += [_fmt(base[n][k]) if k in base[n] else "" for n in names]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _sample_table(rows: Sequence[dict[str, Any]], files: dict[str, str]) -> list[str]:
    score = rows[0].get("score_name", "score")
    shown = rows[:MD_SAMPLE_ROWS]
    lines = [f"First {len(shown)} of {len(rows)} samples (all in `{Path(files.get('samples_csv', 'samples.csv')).name}` "
             f"and `{Path(files.get('samples_jsonl', 'samples.jsonl')).name}`; ground truth and prediction in seconds; "
             f"score: {score}).", "",
             f"| id | video | query | ground truth | prediction | {score} | parse status |", "|---|---|---|---|---|---|---|"]
    for r in shown:
        lines.append("| " + " | ".join(_cell(r.get(k), 60 if k != "status" else 50)
                                       for k in ("id", "video", "query", "gt", "pred", "score", "status")) + " |")
    return lines


def _markdown(report: dict[str, Any], rows: Sequence[dict[str, Any]] = ()) -> str:
    lines = [f"# Evaluation report: {report['task']}", ""]
    lines += ["## Metrics", ""]
    if report["metrics"]:
        lines += _metrics_table(report)
        if report.get("baselines"):
            lines += ["", "Baselines are trivial predictions computed from the ground truth itself (no model): "
                      "a figure is only worth what it adds to them."]
    else:
        lines.append("(no metrics computed)")
    for note in report["notes"]:
        lines += ["", f"> {note}"]
    c = report["counts"]
    lines += ["", "## Counts", "", "| what | count |", "|---|---|"] + [f"| {k} | {v} |" for k, v in c.items()]
    pf = report["parse_failures"]
    lines += ["", "## Parse failures", "",
              f"{pf['total']} of {pf['parsed']} answers unparseable (rate {pf['rate']:.3f}).", ""]
    for name, t in pf["per_task"].items():
        lines.append(f"* **{name}**: {t['unparseable']}/{t['count']} (rate {t['rate']:.3f})")
        for reason, n in t["reasons"].items():
            lines.append(f"  * {reason}: {n}")
        for ex in t["examples"]:
            text = (ex.get("text") or "").replace("\n", " ")[:160]
            lines.append(f"  * example `{ex.get('id')}` ({ex.get('reason')}): {text!r}")
    if rows:
        lines += ["", "## Per sample", ""] + _sample_table(rows, report["files"])
    df = report["decode_failures"]
    lines += ["", "## Decode failures", "", f"{df['count']} video(s) could not be decoded."]
    lines += [f"* `{e['id']}` {e.get('video')}: {e['error']}" for e in df["examples"]]
    prov = report.get("provenance") or {}
    if prov:
        lines += ["", "## Model and checkpoint used", "",
                  f"* model section: {'this config' if prov.get('model_section') == 'config' else prov.get('model_section')}"
                  f" (`{prov.get('model_name')}`; the `model` block of the config below is the one that was built)",
                  f"* checkpoint: `{prov.get('checkpoint')}` ({prov.get('checkpoint_kind') or 'none'})"]
    lines += ["", "## Checkpoints", ""]
    lines += [f"* {ck.get('kind')}: `{ck.get('path')}`" + (f" ({ck['note']})" if ck.get("note") else "")
              for ck in report["checkpoints"]] or ["* none (random init)"]
    t = report["timing"]
    lines += ["", "## Timing", ""] + [f"* {k}: {_fmt(v)}" for k, v in t.items()]
    if report["inference"]:
        lines += [f"* inference (this rank): {json.dumps(report['inference'])}"]
    lines += ["", "## Files", ""] + [f"* {k}: `{v}`" for k, v in report["files"].items()]
    lines += ["", "## Config (resolved)", "", "```json", json.dumps(report["config"], indent=1, default=str), "```", ""]
    return "\n".join(lines)


def write_samples(rows: Sequence[dict[str, Any]], out_dir: Path) -> dict[str, str]:
    """All per-sample rows as `samples.jsonl` (values as they are) and `samples.csv` (lists as JSON)."""
    if not rows:
        return {}
    jsonl = "".join(json.dumps({k: r.get(k) for k in SAMPLE_FIELDS} | {"score_name": r.get("score_name")},
                               ensure_ascii=False, default=str) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SAMPLE_FIELDS)
    for r in rows:
        writer.writerow([json.dumps(r.get(k)) if isinstance(r.get(k), (list, dict)) else r.get(k) for k in SAMPLE_FIELDS])
    atomic_write_text(out_dir / "samples.jsonl", jsonl)
    atomic_write_text(out_dir / "samples.csv", buf.getvalue())
    return {"samples_jsonl": str(out_dir / "samples.jsonl"), "samples_csv": str(out_dir / "samples.csv")}


def write_report(report: dict[str, Any], output: TaskOutput, out_dir: str | Path, *, plots: bool = True,
                 plot_samples: int = 8) -> dict[str, str]:
    """Write the per-sample files, plots, `report.json` and `report.md` into `out_dir`.

    Args:
        plot_samples: timelines drawn in `timeline.png` (spread over the samples; `timelines.html` has all).
    Returns:
        name -> path of every file written (also stored in the report's `files`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = write_samples(output.rows, out_dir)
    title = f"{report['task']}: ground truth vs prediction"
    p = timelines_html(output.timelines, out_dir / "timelines.html", title)
    if p:
        written["timelines_html"] = p
    if plots:
        p = plot_timelines(spread(output.timelines, plot_samples), out_dir / "timeline.png",
                           f"{title} ({min(plot_samples, len(output.timelines))} of {len(output.timelines)}; "
                           "all in timelines.html)")
        if p:
            written["timeline_plot"] = p
        p = plot_iou_histogram(output.rows, out_dir / "iou_hist.png", f"{report['task']}: IoU per query")
        if p:
            written["iou_histogram"] = p
        p = plot_saliency(output.saliency, out_dir / "saliency.png", f"{report['task']}: saliency per clip")
        if p:
            written["saliency_plot"] = p
    report["files"] = {**report["files"], **written,
                       "report_json": str(out_dir / "report.json"), "report_md": str(out_dir / "report.md")}
    for name, text in (("report.json", json.dumps(report, indent=1, default=str) + "\n"),
                       ("report.md", _markdown(report, output.rows))):
        atomic_write_text(out_dir / name, text)
    return report["files"]

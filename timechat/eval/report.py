"""Per-run evaluation summary: `report.json`, `report.md` and plots (matplotlib, Agg backend).

The report holds the metrics, the parse-failure counts / rates / examples per task, the decode
failures, sample counts, timing, the resolved config and the checkpoint(s) used. Plots:

* `timeline.png` (TVG, DVC): per video / query, the ground-truth segments above the predicted ones;
* `saliency.png` (VHD): predicted vs ground-truth (mean annotator) saliency per 2-s clip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from timechat.eval.tasks.base import TaskOutput
from timechat.io import atomic_write_text
from timechat.stats import IssueStats


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def plot_timelines(timelines: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Ground-truth (green) vs predicted (orange) segments, one row pair per video/query.

    Returns:
        The PNG path, or None when there is nothing to draw.
    """
    if not timelines:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    n = len(timelines)
    fig, ax = plt.subplots(figsize=(10, 0.8 * n + 1.2))
    labels, ticks = [], []
    xmax = 1.0
    for i, t in enumerate(timelines):
        y = n - 1 - i
        for s, e in t.get("gt") or []:
            ax.broken_barh([(s, max(e - s, 0.05))], (y + 0.05, 0.4), color="tab:green", edgecolor="white")
            xmax = max(xmax, e)
        for s, e in t.get("pred") or []:
            ax.broken_barh([(s, max(e - s, 0.05))], (y - 0.45, 0.4), color="tab:orange", edgecolor="white")
            xmax = max(xmax, e)
        if t.get("duration"):
            ax.plot([t["duration"], t["duration"]], [y - 0.5, y + 0.5], color="grey", lw=0.8)
            xmax = max(xmax, float(t["duration"]))
        labels.append(str(t.get("label", i)))
        ticks.append(y)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.set_xlim(0, xmax * 1.05)
    ax.set_xlabel("seconds (green: ground truth, orange: prediction, grey: video end)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


def plot_saliency(saliency: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> str | None:
    """Per query: predicted and ground-truth saliency per clip (one small panel each)."""
    if not saliency:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
) -> dict[str, Any]:
    """The JSON-serialisable report dict (see `write_report`)."""
    parse = parse_failure_table(output.parse_stats)
    total = sum(v["count"] for v in parse.values())
    bad = sum(v["unparseable"] for v in parse.values())
    return {
        "task": task,
        "metrics": output.metrics,
        "counts": output.counts,
        "parse_failures": {"total": bad, "parsed": total, "rate": bad / total if total else 0.0, "per_task": parse},
        "decode_failures": {"count": output.counts.get("decode_failures", 0), "examples": output.decode_failures},
        "files": output.files,
        "notes": output.notes,
        "checkpoints": list(checkpoints),
        "timing": timing,
        "inference": inference or {},
        "config": config,
    }


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Evaluation report: {report['task']}", ""]
    lines += ["## Metrics", ""]
    if report["metrics"]:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in report["metrics"].items()]
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
    df = report["decode_failures"]
    lines += ["", "## Decode failures", "", f"{df['count']} video(s) could not be decoded."]
    lines += [f"* `{e['id']}` {e.get('video')}: {e['error']}" for e in df["examples"]]
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


def write_report(report: dict[str, Any], output: TaskOutput, out_dir: str | Path, *, plots: bool = True) -> dict[str, str]:
    """Write plots, `report.json` and `report.md` into `out_dir`.

    Returns:
        name -> path of every file written (also stored in the report's `files`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    if plots:
        p = plot_timelines(output.timelines, out_dir / "timeline.png", f"{report['task']}: ground truth vs prediction")
        if p:
            written["timeline_plot"] = p
        p = plot_saliency(output.saliency, out_dir / "saliency.png", f"{report['task']}: saliency per clip")
        if p:
            written["saliency_plot"] = p
    report["files"] = {**report["files"], **written,
                       "report_json": str(out_dir / "report.json"), "report_md": str(out_dir / "report.md")}
    for name, text in (("report.json", json.dumps(report, indent=1, default=str) + "\n"), ("report.md", _markdown(report))):
        atomic_write_text(out_dir / name, text)
    return report["files"]

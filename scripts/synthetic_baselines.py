#!/usr/bin/env python
"""Trivial temporal-grounding baselines on the synthetic test split (what a model must beat).

* mean_train_span: the mean (start, end) of the training events, for every query;
* whole_video: [0, duration];
* random_span: a uniformly random span inside the video (mean over 20 seeds);
* oracle_first_event: the exact span of the video's first event, whatever the query. Not a trivial
  baseline (it reads the ground truth): it is the ceiling of a model that finds the first event
  and ignores the query, which is where a tiny model that has not learned to ground the query's
  text in the frames plateaus.

With ``--predictions`` (an evaluate.py ``fmt_*_result.json``), the model's R1@0.5 is also broken
down by the rank of the queried event in its video (1st, 2nd, 3rd event): a query-blind model
scores near 0 on the later ones.

    python scripts/synthetic_baselines.py --data data/synthetic [--split test] [--out FILE.json]
        [--predictions outputs/tiny_synthetic/eval/tvg_test/fmt_synthetic_test_f16_result.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timechat.data.synthetic import load_events  # noqa: E402
from timechat.io import read_json  # noqa: E402
from timechat.metrics import tvg_metrics  # noqa: E402


def baselines(data: Path, split: str = "test") -> dict[str, dict[str, float]]:
    gt = read_json(data / "annotations" / f"tvg_{split}.caption_coco_format.json")
    train = read_json(data / "annotations" / "tvg_train.caption_coco_format.json")["annotations"]
    videos = load_events(data, split)
    durations = {v["file"]: float(v["duration"]) for v in videos}
    mean_s = sum(a["timestamp"][0] for a in train) / len(train)
    mean_e = sum(a["timestamp"][1] for a in train) / len(train)
    out = {"mean_train_span": tvg_metrics({str(a["id"]): {"timestamp": [[mean_s, mean_e]]} for a in gt["annotations"]}, gt)}
    out["whole_video"] = tvg_metrics(
        {str(a["id"]): {"timestamp": [[0.0, durations[a["image_id"]]]]} for a in gt["annotations"]}, gt)
    runs = []
    for seed in range(20):
        rng = random.Random(seed)
        preds = {}
        for a in gt["annotations"]:
            d = durations[a["image_id"]]
            s, e = sorted((rng.uniform(0, d), rng.uniform(0, d)))
            preds[str(a["id"])] = {"timestamp": [[s, e]]}
        runs.append(tvg_metrics(preds, gt))
    out["random_span"] = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
    first = {v["file"]: [v["events"][0]["start"], v["events"][0]["end"]] for v in videos}
    out["oracle_first_event"] = tvg_metrics(
        {str(a["id"]): {"timestamp": [first[a["image_id"]]]} for a in gt["annotations"]}, gt)
    return out


def by_event_rank(data: Path, predictions: dict, split: str = "test") -> dict[str, dict[str, float]]:
    """R1@0.5 of `predictions` per rank of the queried event in its video ("1", "2", ...)."""
    gt = read_json(data / "annotations" / f"tvg_{split}.caption_coco_format.json")["annotations"]
    # Events of one video never overlap, so (video file, span) names one event.
    ranks = {(v["file"], (e["start"], e["end"])): k + 1 for v in load_events(data, split) for k, e in enumerate(v["events"])}
    groups: dict[int, list] = {}
    for a in gt:
        groups.setdefault(ranks[(a["image_id"], tuple(a["timestamp"]))], []).append(a)
    groups_named = {str(rank): groups[rank] for rank in sorted(groups)}
    later = [a for rank in sorted(groups) if rank >= 2 for a in groups[rank]]
    if later:
        groups_named["2+"] = later
    out = {}
    for name, rows in groups_named.items():
        preds = {str(a["id"]): predictions.get(str(a["id"]), {"timestamp": []}) for a in rows}
        out[name] = {"queries": len(rows), "R1@0.5": tvg_metrics(preds, {"annotations": rows})["R1@0.5"]}
    return out


def summary_line(result: dict, split: str) -> str:
    """One line: the model's R1@0.5 (overall and on 2nd-or-later events) beside the oracle and the best
    trivial baseline."""
    trivial = {k: v["R1@0.5"] for k, v in result.items() if k in ("mean_train_span", "whole_video", "random_span")}
    best = max(trivial, key=trivial.get)
    parts = []
    if "model" in result:
        ranks = result["model_by_event_rank"]
        later = f", 2nd-or-later events {ranks['2+']['R1@0.5']:.1f} ({ranks['2+']['queries']} queries)" if "2+" in ranks else ""
        parts.append(f"tiny TimeChat R1@0.5 {result['model']['R1@0.5']:.1f} on {split} "
                     f"({sum(v['queries'] for k, v in ranks.items() if k != '2+')} queries{later})")
    parts.append(f"first-event oracle {result['oracle_first_event']['R1@0.5']:.1f}")
    parts.append(f"best trivial baseline {trivial[best]:.1f} ({best})")
    return " | ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--predictions", type=Path, help="a model's fmt_*_result.json to break down by event rank")
    args = parser.parse_args()
    result = baselines(args.data, args.split)
    if args.predictions:
        predictions = read_json(args.predictions)
        gt = read_json(args.data / "annotations" / f"tvg_{args.split}.caption_coco_format.json")
        result["model"] = tvg_metrics({str(a["id"]): predictions.get(str(a["id"]), {"timestamp": []})
                                       for a in gt["annotations"]}, gt)
        result["model_by_event_rank"] = by_event_rank(args.data, predictions, args.split)
    text = json.dumps(result, indent=1)
    if args.out:  # the whole table to the file, the one-line summary to the terminal
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"baselines and breakdown: {args.out}")
    else:
        print(text)
    print(summary_line(result, args.split))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Trivial temporal-grounding baselines on the synthetic test split (what a model must beat).

* mean_train_span: the mean (start, end) of the training events, for every query;
* whole_video: [0, duration];
* random_span: a uniformly random span inside the video (mean over 20 seeds).

    python scripts/synthetic_baselines.py --data data/synthetic [--split test] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timechat.metrics import tvg_metrics  # noqa: E402


def baselines(data: Path, split: str = "test") -> dict[str, dict[str, float]]:
    gt = json.loads((data / "annotations" / f"tvg_{split}.caption_coco_format.json").read_text())
    train = json.loads((data / "annotations" / "tvg_train.caption_coco_format.json").read_text())["annotations"]
    durations = _durations(data, split)
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
    return out


def _durations(data: Path, split: str) -> dict[str, float]:
    dvc = json.loads((data / "annotations" / f"{split}.caption_coco_format.json").read_text())["annotations"]
    return {a["image_id"]: float(a["duration"]) for a in dvc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = baselines(args.data, args.split)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""Command line for the metrics: ``python -m timechat.metrics {dvc,tvg,vhd} --gt GT --pred PRED``.

Prints ONE JSON object (metric name -> full-precision value, plus ``invalid_predictions``: how many
predictions were scored as misses because a timestamp, window or score is NaN, infinite, not a
number, or has start > end) on stdout and exits 0. Each invalid prediction is listed on stderr
(``invalid prediction <id>: <reason>``). When EVERY prediction of the file is invalid the JSON is
still printed but the exit status is 4: such a run measures nothing. Where the original script
crashes (or a file cannot be read), prints ``error: <file>: <what is wrong>`` on stderr and exits 2
(no traceback); Java missing for DVC exits 3. Flags beyond the original's, each off by default so the default behaviour matches it:

* dvc ``--split {train,val,test}``: the SODA_c split; default: from the gt file name as the
  original (``val.xxx.json`` -> val), which fails for other names.
* tvg ``--zero-hull-iou X``: IoU given to a zero-length gt paired with the identical zero-length
  prediction (the original divides by zero).
* vhd ``--out-of-range-clips {error,drop}``: gt clip ids past ``int(duration / 2)`` clips crash
  the original (``error``); ``drop`` ignores them.
"""

from __future__ import annotations

import argparse
import json
import sys

from timechat.metrics._common import InvalidPrediction, MetricInputError
from timechat.metrics._java import JavaUnavailableError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m timechat.metrics",
        description="TimeChat metrics, equal to the original metric scripts; prints one JSON object.",
    )
    sub = parser.add_subparsers(dest="task", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--gt", required=True, help="ground-truth file")
        p.add_argument("--pred", required=True, help="prediction file")
        return p

    dvc = add("dvc", "Dense video captioning (eval_dvc.py): CIDEr, METEOR, SODA_c, P/R/F1. Needs Java.")
    dvc.add_argument("--split", choices=["train", "val", "test"], default=None,
                     help="split for the SODA_c_<1|2|3> key; default: the gt file name up to its "
                          "first '.', as the original (which fails when that is not a split name)")
    dvc.add_argument("--paragraph", action="store_true",
                     help="accepted for compatibility; paragraph metrics are always computed (as in the original)")
    tvg = add("tvg", "Temporal video grounding (eval_tvg.py): R1@0.3/0.5/0.7 and mIoU.")
    tvg.add_argument("--sample", action="store_true",
                     help="evaluate only the predicted query ids (denominator = number of predictions)")
    tvg.add_argument("--zero-hull-iou", type=float, default=None, metavar="X",
                     help="IoU for a zero-length gt paired with the identical zero-length prediction "
                          "(0/0); default: error, as the original's ZeroDivisionError")
    vhd = add("vhd", "Video highlight detection (eval_vhd.py): HL-mAP / HL-Hit1 (+ MR-* with windows).")
    vhd.add_argument("--out-of-range-clips", choices=["error", "drop"], default="error",
                     help="gt relevant_clip_ids past int(duration/2) clips: error (as the original) "
                          "or drop those clips")
    return parser


def _run(args: argparse.Namespace, invalid: list[InvalidPrediction]) -> tuple[dict[str, float], int]:
    """The metrics and the number of predictions in the file (each scored one or invalid)."""
    if args.task == "tvg":
        from timechat.metrics.tvg import load_tvg_gt, load_tvg_pred, tvg_metrics

        pred = load_tvg_pred(args.pred)
        return tvg_metrics(pred, load_tvg_gt(args.gt), sample=args.sample, zero_hull_iou=args.zero_hull_iou,
                           invalid=invalid), len(pred)
    if args.task == "vhd":
        from timechat.metrics.vhd import MAX_PRED_WINDOWS, load_vhd_gt, load_vhd_pred, vhd_metrics

        pred = load_vhd_pred(args.pred)
        results = vhd_metrics(pred, load_vhd_gt(args.gt), out_of_range_clips=args.out_of_range_clips,
                              invalid=invalid)
        # one prediction per saliency list and per scored window (the first 10)
        total = sum(("pred_saliency_scores" in d) + min(len(d.get("pred_relevant_windows") or []), MAX_PRED_WINDOWS)
                    for d in pred if isinstance(d, dict))
        return results, total
    from timechat.metrics.dvc import dvc_metrics, load_dvc_gt, load_dvc_pred, split_from_gt_path

    split = args.split or split_from_gt_path(args.gt)
    pred = load_dvc_pred(args.pred)
    total = sum(len(v) for v in pred.values() if isinstance(v, list))
    return dvc_metrics(pred, load_dvc_gt(args.gt), split, invalid=invalid), total


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, compute, print one JSON object; return the exit status."""
    args = _parser().parse_args(argv)
    invalid: list[InvalidPrediction] = []
    try:
        results, total = _run(args, invalid)
    except MetricInputError as e:
        msg = str(e)
        # Errors from the pure functions name the id/key; add the files they came from.
        if args.gt not in msg and args.pred not in msg:
            msg = f"{msg} [gt: {args.gt}, pred: {args.pred}]"
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except JavaUnavailableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    for p in invalid:
        print(f"invalid prediction {p.id}: {p.reason} [{args.pred}]", file=sys.stderr)
    json.dump({**results, "invalid_predictions": len(invalid)}, sys.stdout)
    sys.stdout.write("\n")
    if invalid and len(invalid) >= total:
        print(f"error: {args.pred}: all {total} predictions are invalid (scored as misses); "
              "the metrics above measure nothing", file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())

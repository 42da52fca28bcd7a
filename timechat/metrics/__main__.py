"""Command line for the metrics: ``python -m timechat.metrics {dvc,tvg,vhd} --gt GT --pred PRED``.

Prints ONE JSON object (metric name -> full-precision value) on stdout and exits 0. Where the
original script crashes, prints ``error: <file>: <what is wrong>`` on stderr and exits 2 (no
traceback). Flags beyond the original's, each off by default so the default behaviour matches it:

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

from timechat.metrics._common import MetricInputError
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


def _run(args: argparse.Namespace) -> dict[str, float]:
    if args.task == "tvg":
        from timechat.metrics.tvg import load_tvg_gt, load_tvg_pred, tvg_metrics

        return tvg_metrics(load_tvg_pred(args.pred), load_tvg_gt(args.gt), sample=args.sample,
                           zero_hull_iou=args.zero_hull_iou)
    if args.task == "vhd":
        from timechat.metrics.vhd import load_vhd_gt, load_vhd_pred, vhd_metrics

        return vhd_metrics(load_vhd_pred(args.pred), load_vhd_gt(args.gt),
                           out_of_range_clips=args.out_of_range_clips)
    from timechat.metrics.dvc import dvc_metrics, load_dvc_gt, load_dvc_pred, split_from_gt_path

    split = args.split or split_from_gt_path(args.gt)
    return dvc_metrics(load_dvc_pred(args.pred), load_dvc_gt(args.gt), split)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, compute, print one JSON object; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        results = _run(args)
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
    json.dump(results, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

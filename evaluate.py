#!/usr/bin/env python
"""Evaluate TimeChat on one task (dvc, tvg, vhd, mvbench, tempcompass, egoschema, videomme).

    python evaluate.py --cfg-path eval_configs/tiny_synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=8 evaluate.py --cfg-path eval_configs/timechat_tvg_charades.yaml

Overrides use dot keys, e.g. `eval.batch_size=4 eval.checkpoint=outputs/run/checkpoints/step_00000200
output_dir=outputs/eval_try`. Writes `results_rank{r}.jsonl`, `results.json`, the `fmt_*` prediction
file, `report.json`, `report.md`, `samples.csv`/`samples.jsonl`, plots and `timelines.html` into
`output_dir`; an interrupted run resumes. Before the model is built, every path the config names is
checked (`python -m timechat.check`); a failure is one message from rank 0, with the traceback only
under `--debug` (or TIMECHAT_DEBUG=1).
"""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run(argv: list[str]) -> int:
    from timechat.check import cfg_path_of, preflight
    from timechat.config import load_config_from_cli
    from timechat.eval.run import run_evaluation
    from timechat.distributed import cleanup, read_launcher_env
    from timechat.logs import setup_logging

    cfg = load_config_from_cli(argv, __doc__, "eval_configs")
    preflight(cfg, "eval", source=cfg_path_of(argv))
    rank = read_launcher_env()[0]
    setup_logging(str(cfg.output_dir), rank, filename="eval.log")
    try:
        report = run_evaluation(cfg)
    finally:
        cleanup()
    if report is not None:
        print(json.dumps({"task": report["task"], "metrics": report["metrics"], "counts": report["counts"],
                          "report": report["files"]["report_md"]}, indent=1, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    from timechat.check import report_failure, split_debug_flag
    from timechat.distributed import read_launcher_env

    argv, debug = split_debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        return run(argv)
    except Exception as exc:  # noqa: BLE001 - one message per failure, the traceback on request
        try:
            rank = read_launcher_env()[0]
        except ValueError:
            rank = 0
        return report_failure(exc, rank=rank, debug=debug)


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())

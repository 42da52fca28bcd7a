#!/usr/bin/env python
"""Evaluate TimeChat on one task (dvc, tvg, vhd, mvbench, tempcompass, egoschema, videomme).

    python evaluate.py --cfg-path eval_configs/tiny_synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=8 evaluate.py --cfg-path eval_configs/timechat_tvg_charades.yaml

Overrides use dot keys, e.g. `eval.batch_size=4 eval.checkpoint=outputs/run/checkpoints/step_00000200
output_dir=outputs/eval_try`. Writes `results_rank{r}.jsonl`, `results.json`, the `fmt_*` prediction
file, `report.json`, `report.md` and plots into `output_dir`; an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from timechat.config import load_config_from_cli
    from timechat.eval.run import run_evaluation
    from timechat.distributed import cleanup, read_launcher_env
    from timechat.logs import setup_logging

    cfg = load_config_from_cli(argv, __doc__, "eval_configs")
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


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())

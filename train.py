#!/usr/bin/env python
"""Fine-tune TimeChat.

    python train.py --cfg-path train_configs/tiny_synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=8 train.py --cfg-path train_configs/stage2_finetune_time104k_valley72k.yaml

Overrides use dot keys, e.g. `run.max_steps=4 output_dir=outputs/try model.config.mode=fixed`.
Before anything is built, every path the config names is checked (`python -m timechat.check`); a
failure is one message from rank 0, with the traceback only under `--debug` (or TIMECHAT_DEBUG=1).
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
    from timechat.logs import setup_logging
    from timechat.train.recipe import TrainRecipe

    cfg = load_config_from_cli(argv, __doc__, "train_configs")
    preflight(cfg, "train", source=cfg_path_of(argv))
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(cfg.output_dir if "output_dir" in cfg else None, rank)
    recipe = TrainRecipe(cfg)
    recipe.setup()
    summary = recipe.train()
    if recipe.dist.is_main:
        print(json.dumps({k: v for k, v in summary.items() if k != "losses"} | {"final_loss": summary["losses"][-1]
                         if summary["losses"] else None}, indent=1))
    recipe.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    from timechat.check import report_failure, split_debug_flag

    argv, debug = split_debug_flag(sys.argv[1:] if argv is None else list(argv))
    try:
        return run(argv)
    except Exception as exc:  # noqa: BLE001 - one message per failure, the traceback on request
        return report_failure(exc, rank=int(os.environ.get("RANK", "0")), debug=debug)


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())

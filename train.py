#!/usr/bin/env python
"""Fine-tune TimeChat.

    python train.py --cfg-path train_configs/tiny_synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=8 train.py --cfg-path train_configs/stage2_finetune_time104k_valley72k.yaml

Overrides use dot keys, e.g. `run.max_steps=4 output_dir=outputs/try model.config.mode=fixed`.
"""

from __future__ import annotations

import json
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    from timechat.config import load_config_from_cli
    from timechat.logs import setup_logging
    from timechat.train.recipe import TrainRecipe

    cfg = load_config_from_cli(argv, __doc__, "train_configs")
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


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())

#!/usr/bin/env python
"""Fine-tune TimeChat.

    python train.py --cfg-path train_configs/tiny_synthetic.yaml [key=value ...]
    torchrun --nproc_per_node=8 train.py --cfg-path train_configs/stage2_finetune_time104k_valley72k.yaml

Overrides use dot keys, e.g. `run.max_steps=4 output_dir=outputs/try model.config.mode=fixed`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", "--cfg_path", required=True, help="YAML config (train_configs/...)")
    parser.add_argument("--options", nargs="*", default=[], help="key=value overrides (also accepted positionally)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from timechat.config import load_config
    from timechat.train.logging import setup_logging
    from timechat.train.recipe import TrainRecipe

    cfg = load_config(args.cfg_path, list(args.options) + list(args.overrides))
    rank = int(os.environ.get("RANK", "0"))
    setup_logging(cfg.output_dir if "output_dir" in cfg else None, rank)
    recipe = TrainRecipe(cfg)
    summary = recipe.train()
    if recipe.dist.is_main:
        print(json.dumps({k: v for k, v in summary.items() if k != "losses"} | {"final_loss": summary["losses"][-1]
                         if summary["losses"] else None}, indent=1))
    from timechat.train.distributed import cleanup

    cleanup()
    return 0


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())

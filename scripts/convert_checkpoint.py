#!/usr/bin/env python
"""Convert TimeChat checkpoints to and from one directory in the Hugging Face layout.

    # the original files of a config's `model` section (model.files) -> one directory
    python scripts/convert_checkpoint.py from-config --cfg-path eval_configs/timechat_tvg_charades.yaml \
        OUT_DIR [--merge-lora] [--max-shard-size 5GB] [key=value ...]
    # a training step folder (output_dir/checkpoints/step_N) -> one directory
    python scripts/convert_checkpoint.py from-step outputs/run/checkpoints/step_00000200 OUT_DIR
    # a directory -> the original timechat_7b.pth layout
    python scripts/convert_checkpoint.py to-original OUT_DIR timechat_7b.pth

`from-config --meta` builds the architecture on the meta device, reads no file and writes only
config.json, the index (every key with its shape) and adapter_config.json: a layout check of a
7B conversion without its weights. Every `.pth` is read with `torch.load(weights_only=True)`;
a file that needs unpickling of anything else is an error naming it. The layout is described in
`timechat/models/pretrained.py`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _save_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output directory")
    parser.add_argument("--merge-lora", action="store_true", help="fold LoRA into the LLaMA weights")
    parser.add_argument("--max-shard-size", default="5GB", help="bytes per weight file, e.g. 5GB (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output directory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("from-config", help="original files of a config's model section -> directory")
    p.add_argument("--cfg-path", "--cfg_path", required=True, help="YAML config with a `model` section")
    _save_options(p)
    p.add_argument("--meta", action="store_true", help="architecture only, on the meta device: config + index")
    p.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. model.files.ckpt=...")
    p = sub.add_parser("from-step", help="training step folder -> directory")
    p.add_argument("step_dir", type=Path)
    _save_options(p)
    p = sub.add_parser("to-original", help="directory -> original timechat_7b.pth layout")
    p.add_argument("directory", type=Path)
    p.add_argument("out", type=Path, help="output .pth")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from timechat.models import pretrained

    try:
        if args.command == "to-original":
            out = pretrained.export_original(args.directory, args.out)
        else:
            save = {"merge_lora": args.merge_lora, "max_shard_size": args.max_shard_size, "overwrite": args.overwrite}
            if args.command == "from-config":
                from timechat.config import load_config, resolve_config

                section = resolve_config(load_config(args.cfg_path, list(args.overrides))).get("model")
                if not section:
                    raise KeyError(f"{args.cfg_path} has no `model` section")
                out = pretrained.convert_original(section, args.out, meta=args.meta, **save)
            else:
                out = pretrained.convert_step_folder(args.step_dir, args.out, **save)
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

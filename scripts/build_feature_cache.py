#!/usr/bin/env python
"""Precompute the frozen ViT + ln_vision features of every video of a training config's datasets.

    python scripts/build_feature_cache.py --cfg-path train_configs/X.yaml --out CACHE_ROOT [key=value ...]
    # several GPUs: one process per shard, same --out (per-video files are written atomically)
    CUDA_VISIBLE_DEVICES=3 python scripts/build_feature_cache.py --cfg-path X.yaml --out CACHE_ROOT --shard 3/8

Each dataset of the config's `datasets` section gets `CACHE_ROOT/<dataset name>/` (see
`timechat/data/feature_cache.py` for the layout), built with the dataset's `num_frames` and
`image_size`, uniform sampling and the eval transform, under the config's `run.precision` autocast.
The datasets must say `sampling: uniform` and `train_aug: false`: only then are cached features
exactly what training would compute. An interrupted build resumes where it stopped.

Without a config (random weights; for smoke tests and timing only):

    python scripts/build_feature_cache.py --preset timechat_tiny --records R.json --videos-root V --out C --num-frames 8 --image-size 56
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from any directory
    sys.path.insert(0, str(REPO))

from timechat.data.settings import DataSettings  # noqa: E402 (after the sys.path line)

logger = logging.getLogger("build_feature_cache")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg-path", help="training YAML: model (with its weight files) and datasets")
    p.add_argument("--out", required=True, help="cache root; one sub-folder per dataset")
    p.add_argument("--datasets", help="comma-separated subset of the config's datasets")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="storage dtype; 'auto' = what the ViT computes (bit-exact)")
    p.add_argument("--batch-frames", type=int, default=256, help="frames per ViT call")
    p.add_argument("--num-workers", type=int, default=4, help="decoding DataLoader workers")
    p.add_argument("--shard", default="0/1", help="i/n: this process builds every n-th video from the i-th")
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", help="no config: build this model preset with random weights (timechat_tiny, ...)")
    p.add_argument("--records", help="with --preset: TimeIT json whose `video` fields are cached")
    p.add_argument("--videos-root", help="with --preset: folder the records' videos are relative to")
    p.add_argument("--num-frames", "--n-frms", type=int, default=DataSettings.num_frames, help="with --preset")
    p.add_argument("--image-size", type=int, default=DataSettings.image_size, help="with --preset")
    p.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = p.parse_args(argv)
    if bool(args.cfg_path) == bool(args.preset):
        p.error("give exactly one of --cfg-path or --preset")
    if args.preset and not (args.records and args.videos_root):
        p.error("--preset needs --records and --videos-root")
    try:
        i, n = (int(x) for x in args.shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        p.error(f"--shard must be i/n with 0 <= i < n, got {args.shard!r}")
    args.shard_index, args.shard_count = i, n
    return args


def _jobs_from_config(args: argparse.Namespace, device: Any) -> tuple[Any, list[dict[str, Any]], str | None]:
    """(model, [{name, videos_root, videos, num_frames, image_size}], autocast) from a training config."""
    from timechat.config import RunConfig, load_config, resolve_config
    from timechat.data.datasets import load_json_records
    from timechat.data.feature_cache import require_exact_caching
    from timechat.factory import build_model_and_tokenizers

    cfg = resolve_config(load_config(args.cfg_path, args.overrides))
    wanted = set(args.datasets.split(",")) if args.datasets else None
    sections = {k: v for k, v in (cfg.get("datasets") or {}).items() if wanted is None or k in wanted}
    if wanted and wanted - set(sections):
        raise KeyError(f"datasets {sorted(wanted - set(sections))} are not in {args.cfg_path}")
    if not sections:
        raise ValueError(f"{args.cfg_path} has no datasets to cache")
    jobs = []
    for name, entry in sections.items():
        settings = DataSettings(**{k: v for k, v in entry.items() if k in DataSettings.field_names()})
        require_exact_caching(settings, f"dataset {name}")
        records = load_json_records(entry["records"]) if isinstance(entry["records"], str) else entry["records"]
        videos = [r["video"] for r in records if isinstance(r, dict) and isinstance(r.get("video"), str)]
        jobs.append({"name": name, "videos_root": entry["videos_root"], "videos": videos,
                     "num_frames": settings.num_frames, "image_size": settings.image_size})
    model, _, _ = build_model_and_tokenizers(cfg["model"], device=device)
    precision = (cfg.get("run") or {}).get("precision", RunConfig.precision)
    autocast = precision if precision in ("bf16", "fp16") and getattr(device, "type", str(device)) == "cuda" else None
    return model, jobs, autocast


def _jobs_from_preset(args: argparse.Namespace, device: Any) -> tuple[Any, list[dict[str, Any]], str | None]:
    from timechat import registry
    from timechat.data.datasets import load_json_records
    from timechat.models.builders import build_timechat

    logger.warning("building %s with RANDOM weights: the cache is only good for tests and timing", args.preset)
    model, _ = build_timechat(registry.lookup("model", args.preset)(), device=device)
    videos = [r["video"] for r in load_json_records(args.records) if isinstance(r, dict) and "video" in r]
    return model, [{"name": Path(args.records).stem, "videos_root": args.videos_root, "videos": videos,
                    "num_frames": args.num_frames, "image_size": args.image_size}], None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    from timechat.data.feature_cache import build_feature_cache, write_index

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else torch.device(args.device)
    torch.manual_seed(0)  # weights not loaded from files are then the same on every run (resumable)
    model, jobs, autocast = (_jobs_from_config if args.cfg_path else _jobs_from_preset)(args, device)
    model.eval()
    summary = {}
    for job in jobs:
        videos = list(dict.fromkeys(job["videos"]))[args.shard_index::args.shard_count]
        out = Path(args.out) / job["name"]
        t0 = time.perf_counter()
        every = max(1, len(videos) // 100)

        def progress(done: int, total: int, key: str) -> None:
            if done % every == 0 or done == total:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                logger.info("%s: %d/%d videos to encode (%.2f videos/s), last %s", job["name"], done, total, rate, key)

        report = build_feature_cache(
            model, videos, out, job["num_frames"], job["image_size"], args.dtype, args.batch_frames,
            videos_root=job["videos_root"], autocast=autocast, num_workers=args.num_workers, device=device,
            progress=progress,
        )
        write_index(out)
        summary[job["name"]] = {"out": str(out), "videos": len(videos), "written": len(report.written),
                                "skipped": len(report.skipped), "failed": report.failed,
                                "seconds": round(time.perf_counter() - t0, 1)}
        logger.info("%s: %s", job["name"], summary[job["name"]])
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())

#!/usr/bin/env python
"""Peak resident memory of `TimeChat.from_pretrained` on a random mid-size model.

    python scripts/measure_load_memory.py [--llm-hidden 2048 --llm-layers 4] [--dir SCRATCH] [--json OUT]

A random TimeChat whose LLaMA is large enough for at least 1 GB of fp32 weights (the default: tiny
towers, LLaMA of hidden 2048, 4 layers, 32000 words: 1.3 GB) is written with `save_pretrained`;
a fresh subprocess then imports everything, notes its peak RSS (VmHWM of /proc/self/status, the
high-water mark `ru_maxrss` reports, but for this process image only), loads the directory and
notes the peak again. The figure is the increase of the peak over the weights' size on disk:
1.0 means one copy of the weights, 2.0 a second one (what `torch.load` or a load into a randomly
initialised model gives). No psutil: /proc only (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, sys, time
import torch
from timechat.models.timechat import TimeChat
import timechat.models.pretrained  # noqa: F401  (everything imported before the baseline)

def status_mb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024

def peak_mb():
    # VmHWM: the peak RSS of this process image. ru_maxrss would do on a fresh process, but Linux
    # carries the parent's peak over exec into it (signal->maxrss), and the parent held the model.
    return max(status_mb("VmHWM"), 0.0)

def rss_mb():
    return status_mb("VmRSS")
before = peak_mb()
t0 = time.perf_counter()
model = TimeChat.from_pretrained(sys.argv[1])
seconds = time.perf_counter() - t0
params = sum(p.numel() for p in model.parameters())
print(json.dumps({"peak_before_mb": before, "peak_after_mb": peak_mb(), "rss_after_mb": rss_mb(),
                  "load_s": seconds, "parameters": params}))
"""


def build_and_save(directory: Path, hidden: int, layers: int, max_shard_size: str) -> None:
    import torch

    from timechat.models.builders import build_timechat, timechat_tiny

    llm = {"hidden_size": hidden, "num_layers": layers, "num_heads": hidden // 128, "num_kv_heads": hidden // 128,
           "intermediate_size": int(hidden * 2.6875), "vocab_size": 32000, "max_position_embeddings": 1024}
    torch.manual_seed(0)
    model, _ = build_timechat(timechat_tiny(llm=llm, image_token_id=32000))
    model.save_pretrained(directory, max_shard_size=max_shard_size, provenance={"source": "random (memory measurement)"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llm-hidden", type=int, default=2048)
    parser.add_argument("--llm-layers", type=int, default=4)
    parser.add_argument("--max-shard-size", default="5GB")
    parser.add_argument("--dir", type=Path, help="keep the directory here (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="timechat_mem_") as scratch:
        directory = args.dir or Path(scratch) / "model"
        if not (directory / "config.json").is_file():
            build_and_save(directory, args.llm_hidden, args.llm_layers, args.max_shard_size)
        weights = sum(p.stat().st_size for p in directory.rglob("*.safetensors"))
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS="1")
        proc = subprocess.run([sys.executable, "-c", CHILD, str(directory)], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        child = json.loads(proc.stdout.strip().splitlines()[-1])
    weights_mb = weights / 2**20
    increase = child["peak_after_mb"] - child["peak_before_mb"]
    result = {
        **child,
        "weights_mb": round(weights_mb, 1),
        "peak_increase_mb": round(increase, 1),
        "peak_increase_over_weights": round(increase / weights_mb, 3),
        "peak_total_over_weights": round(child["peak_after_mb"] / weights_mb, 3),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                   f"{platform.system()} {platform.release()}",
    }
    print(f"weights on disk         {weights_mb:9.1f} MiB ({child['parameters']:,} parameters)")
    print(f"peak RSS before load    {child['peak_before_mb']:9.1f} MiB (interpreter, torch, transformers)")
    print(f"peak RSS after load     {child['peak_after_mb']:9.1f} MiB")
    print(f"peak increase           {increase:9.1f} MiB = {increase / weights_mb:.3f} x the weights "
          f"(whole process: {child['peak_after_mb'] / weights_mb:.3f} x); load took {child['load_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if increase / weights_mb <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Peak memory of encoding long videos, and the token counts of TimeChat-7B per frame count (issue 17).

    python scripts/measure_long_video_memory.py [--frames 96 384 1536] [--chunk 32] [--image-size 56]
        [--llama-tokenizer DIR] [--json OUT]

Measurement (tiny model, random weights, CPU): for each frame count and each of `--chunk` and no
chunking, a fresh subprocess builds `timechat_tiny` (`position_overflow: nearest`), makes random
pixels (1, 3, T, H, W) and timestamp ids (T, 12), encodes 2 frames once (thread pools, lazy
allocations), then reads its resident size (VmRSS of /proc/self/status), resets the peak (writing
5 to /proc/self/clear_refs resets VmHWM, Linux >= 4.0) and runs `encode_video` under `no_grad`.
The figure is peak minus resident size before: what encoding added at its peak, over the model and
the input pixels. One process per measurement, so no run sees another's freed-but-kept heap.

Check: from the smallest to the largest frame count, the chunked encoder's peak may grow by at most
the features it stores for every frame, fp32: the frame Q-Former rows Q' x D twice (the output and
the copy with positions added), the frame's share of the video Q-Former outputs twice (per window
and concatenated) and of the projected tokens; with 8 MiB for allocator noise. Exit status 1 when
it grows more.

Formula (TimeChat-7B, `timechat_7b()`, 1 fps so frame k is at k s): video tokens N_v * ceil(T / S);
tokens of the prompt's frame-time message (``The video contains T frames sampled at 0.0, 1.0, ...``,
counted with the LLaMA-2 tokenizer when `--llama-tokenizer` names one, else estimated: LLaMA splits
digits, so ``d``-digit seconds cost d + 4 pieces); bf16 KV cache 2 * layers * hidden * 2 bytes per
token; the frame Q-Former rows kept per frame; the LLM's 4096 positions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TS_LEN = 12
"""Timestamp-text length per frame in the measurement (BERT pieces of `This frame is sampled at 123.0 second.`)."""
NOISE_MB = 8.0


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(frames: int, chunk: int | None, image_size: int) -> dict:
    """One measurement, in this (fresh) process."""
    import torch

    from timechat.models.builders import timechat_tiny
    from timechat.models.timechat import TimeChat

    torch.manual_seed(0)
    cfg = timechat_tiny(position_overflow="nearest", frame_chunk_size=chunk)
    cfg.vision.image_size = image_size
    model = TimeChat(cfg).eval()
    pixels = torch.randn(1, 3, frames, image_size, image_size)  # (B, 3, T, H, W)
    ids = torch.randint(1, 500, (frames, TS_LEN))
    mask = torch.ones(frames, TS_LEN, dtype=torch.long)
    with torch.no_grad():
        model.encode_video(pixels[:, :, :2], ids[:2], mask[:2])  # warm-up
        before = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        out = model.encode_video(pixels, ids, mask)
        peak = _status_mb("VmHWM")
    rows = cfg.qformer.num_query_tokens + TS_LEN  # compat: Q + L rows per frame
    tokens_per_frame = out.shape[1] / frames
    stored = (2 * rows * cfg.qformer.hidden_size  # frame Q-Former rows, and their copy with positions
              + 2 * tokens_per_frame * cfg.qformer.hidden_size  # video Q-Former outputs: per window, concatenated
              + tokens_per_frame * out.shape[2]) * 4  # projected tokens
    return {"frames": frames, "chunk": chunk, "rss_before_mb": before, "peak_mb": peak, "added_mb": peak - before,
            "tokens": int(out.shape[1]), "stored_per_frame_b": stored,
            "vit_features_per_frame_b": cfg.vision.num_tokens * cfg.vision.width * 4}


def measure(frames: int, chunk: int | None, image_size: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--child", str(frames), str(chunk or 0), str(image_size)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement T={frames} chunk={chunk} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def seven_b_formula(frame_counts: list[int], tokenizer_dir: str | None) -> list[dict]:
    """Token counts and sizes of TimeChat-7B for `frame_counts` frames at 1 fps."""
    from timechat.data.video import build_msg
    from timechat.models.builders import timechat_7b

    cfg = timechat_7b()
    tok = None
    if tokenizer_dir:
        from transformers import LlamaTokenizer

        tok = LlamaTokenizer.from_pretrained(tokenizer_dir)
    kv_per_token = 2 * cfg.llm.num_layers * cfg.llm.hidden_size * 2  # K and V, bf16
    rows = cfg.qformer.num_query_tokens + TS_LEN
    table = []
    for t in frame_counts:
        ts = [f"{k}.0" for k in range(t)]
        msg = build_msg(ts)
        msg_tokens = (len(tok.encode(msg, add_special_tokens=False)) if tok is not None
                      else 12 + sum(len(str(k)) + 4 for k in range(t)))
        video = cfg.num_video_tokens(t)
        table.append({"frames": t, "video_tokens": video, "msg_tokens": msg_tokens, "counted": tok is not None,
                      "kv_cache_mib_video_plus_msg": (video + msg_tokens) * kv_per_token / 2**20,
                      "frame_rows_mib": t * rows * cfg.qformer.hidden_size * 4 / 2**20,
                      "llm_positions": cfg.llm.max_position_embeddings})
    return table


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        frames, chunk, size = (int(a) for a in argv[1:4])
        print(json.dumps(child(frames, chunk or None, size)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[96, 384, 1536])
    parser.add_argument("--chunk", type=int, default=32, help="model.frame_chunk_size of the chunked runs")
    parser.add_argument("--image-size", type=int, default=56, help="frame size of the tiny ViT (56: the preset)")
    parser.add_argument("--llama-tokenizer", help="a LLaMA-2 tokenizer folder, to count the message tokens")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    runs = [measure(t, c, args.image_size) for t in args.frames for c in (args.chunk, None)]
    print(f"tiny TimeChat (image {args.image_size}, chunk {args.chunk}); encoding's peak over RSS before, MiB")
    print(f"{'frames':>7} {'tokens':>7} {'chunked':>9} {'unchunked':>10} {'RSS before':>11}")
    for t in args.frames:
        c, u = (next(r for r in runs if r["frames"] == t and r["chunk"] == ch) for ch in (args.chunk, None))
        print(f"{t:7d} {c['tokens']:7d} {c['added_mb']:9.1f} {u['added_mb']:10.1f} {c['rss_before_mb']:11.1f}")
    chunked = sorted((r for r in runs if r["chunk"] == args.chunk), key=lambda r: r["frames"])
    lo, hi = chunked[0], chunked[-1]
    extra = hi["frames"] - lo["frames"]
    allowed = extra * hi["stored_per_frame_b"] / 2**20 + NOISE_MB
    growth = hi["added_mb"] - lo["added_mb"]
    ok = growth <= allowed
    print(f"stored features per frame: {hi['stored_per_frame_b']:.0f} B; the input pixels are allocated before "
          "the baseline and not counted")
    print(f"chunked growth {lo['frames']} -> {hi['frames']} frames: {growth:.1f} MiB; stored features of the "
          f"{extra} extra frames: {extra * hi['stored_per_frame_b'] / 2**20:.1f} MiB (+{NOISE_MB:g} MiB noise) -> "
          f"{'ok' if ok else 'FAIL'}; their ViT features alone would be "
          f"{extra * hi['vit_features_per_frame_b'] / 2**20:.1f} MiB")
    formula = seven_b_formula(args.frames, args.llama_tokenizer)
    print("TimeChat-7B at 1 fps (formula)")
    print(f"{'frames':>7} {'video tok':>10} {'msg tok':>8} {'KV MiB':>8} {'frame rows MiB':>15}")
    for r in formula:
        print(f"{r['frames']:7d} {r['video_tokens']:10d} {r['msg_tokens']:8d} {r['kv_cache_mib_video_plus_msg']:8.0f} "
              f"{r['frame_rows_mib']:15.1f}")
    result = {"runs": runs, "growth_mb": growth, "allowed_mb": allowed, "ok": ok, "seven_b": formula,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                         f"{platform.system()} {platform.release()}"}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

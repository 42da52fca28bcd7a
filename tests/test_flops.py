"""timechat.flops: the FLOP model against torch's FLOP counter (tiny model) and the 7B accounting."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from timechat.constants import IGNORE_INDEX
from timechat.flops import flops_per_sample, llm_flops_per_sequence, mfu, peak_bf16_flops
from timechat.models.builders import build_timechat, timechat_7b, timechat_tiny


def test_flop_model_matches_the_flop_counter_on_the_tiny_model():
    from timechat.data.tokenization import LlamaTokenizer, tokenize_timestamps
    from timechat.data.video import timestamp_sentences
    from timechat.factory import ASSETS_DIR

    n_frames, n_text, n_supervised, b = 8, 48, 8, 2
    cfg = timechat_tiny(dtype="fp32")
    cfg.max_frame_pos = max(cfg.max_frame_pos, n_frames)
    torch.manual_seed(0)
    model, _ = build_timechat(cfg)
    model.train()
    ts_tok = LlamaTokenizer.from_pretrained(ASSETS_DIR / "tiny_tokenizer")
    ts = tokenize_timestamps(timestamp_sentences([str(1.5 * k) for k in range(n_frames)]), ts_tok)  # (T, L_ts)
    n_vid = cfg.num_video_tokens(n_frames)
    ids = torch.randint(3, cfg.llm.vocab_size, (b, n_text + n_vid), generator=torch.Generator().manual_seed(0))
    ids[:, 4:4 + n_vid] = cfg.image_token_id
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, -n_supervised:] = ids[:, -n_supervised:]
    size, v = cfg.vision.image_size, cfg.vision
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids),
             "timestamps": {k: t.repeat(b, 1) for k, t in ts.items()},  # (B*T, L_ts)
             "images": torch.randn(b, 3, n_frames, size, size)}  # (B, 3, T, H, W)
    ours = flops_per_sample(cfg, n_frames, n_text, ts["input_ids"].shape[1])
    with FlopCounterMode(display=False) as counter:
        model.encode_frames(torch.randn(n_frames, 3, size, size))
    # The CPU counter does not see the fused attention kernel: compare the matmul/conv part exactly.
    attention = n_frames * v.depth * 4 * v.num_tokens**2 * v.width
    assert counter.get_total_flops() == ours["vit"] - attention
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    assert abs(counter.get_total_flops() / (2 * ours["total"]) - 1) < 0.1


def test_flop_model_7b():
    f = flops_per_sample(timechat_7b(), 96, 704, 15)
    # the original's accounting: ViT ~49, LLM ~21, Q-Formers ~4 TFLOP (+ attention terms here)
    assert 49e12 < f["vit"] < 51e12 and 21e12 < f["llm"] < 23e12 and 4e12 < f["qformers"] < 5e12
    assert 74e12 < f["total"] < 78e12
    assert f["total"] == f["vit"] + f["qformers"] + f["llm"]
    assert flops_per_sample(timechat_7b(), 96, 704, 15, include_vit=False)["vit"] == 0
    # a text-only sequence: the LLM term of a one-frame sample with the same total length
    cfg = timechat_7b()
    assert llm_flops_per_sequence(cfg, 1024) == flops_per_sample(cfg, 1, 1024 - cfg.num_video_tokens(1), 0)["llm"]


def test_peak_and_mfu():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == (989.4e12, "H100")
    assert peak_bf16_flops("NVIDIA H100 PCIe") == (756.0e12, "H100 PCIe")  # the more specific entry first
    assert peak_bf16_flops("cpu") is None
    assert mfu(400e12, 800e12) == pytest.approx(0.5)
    assert mfu(400e12, None) is None

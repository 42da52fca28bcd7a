"""Model FLOPs of a TimeChat training sample, and MFU (model FLOPs utilisation).

The accounting (model FLOPs, not hardware FLOPs; README "FLOP model (MFU)"):

* a matmul of a token by a (n x m) weight costs 2nm forward. Forward of a part = 2 * (its matmul
  parameters) * (tokens that pass through them) + attention scores/values (4 * s_q * s_k * d per
  layer; LLaMA is causal, so half of that);
* frozen ViT: forward only (no graph): 2 * P_vit * 257 tokens per frame + attention + patch embedding;
* LLaMA with frozen base weights: forward 2*P*S, backward needs the activation gradients (another
  2*P*S, LoRA sits in every layer and the video tokens need gradients) but no weight gradients:
  4*P_base*S; the trainable LoRA weights cost the usual 6*P_lora*S; attention 3x forward;
* trainable Q-Formers, video Q-Former and llama_proj: 6 * params * tokens (+ attention 3x forward);
* gradient-checkpointing recomputation is NOT counted (MFU, not HFU); embedding lookups, norms,
  softmax and the optimizer are ignored.

TimeChat-7B, 96 frames, 704 text + 96 video tokens: ViT ~50, LLaMA ~22, Q-Formers ~4.4 TFLOP per
sample, i.e. ~76 TFLOP (the original's accounting, without attention and patch embedding: ~74).
MFU = achieved model FLOP/s / the device's dense bf16 peak (`PEAK_BF16_TFLOPS`).
"""

from __future__ import annotations

import math

from timechat.models.config import TimeChatConfig

__all__ = ["PEAK_BF16_TFLOPS", "flops_per_sample", "llm_flops_per_sequence", "mfu", "peak_bf16_flops"]

# Dense bf16 tensor-core peak in TFLOP/s (no sparsity), matched against the device name in order.
PEAK_BF16_TFLOPS = (
    ("H200", 989.4), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("H100", 989.4), ("H800", 989.4),
    ("GH200", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L4", 121.0),
    ("A10G", 70.0), ("RTX 4090", 165.0),
)


def flops_per_sample(cfg: TimeChatConfig, n_frames: int, n_text: int, ts_len: int, *,
                     include_vit: bool = True) -> dict[str, float]:
    """Model FLOPs of one training sample (forward + backward), by part; see the module docstring.

    Args:
        cfg: the architecture.
        n_frames: frames of the video.
        n_text: text tokens of the prompt (the video tokens are added).
        ts_len: timestamp-text tokens per frame fed to the frame Q-Former.
        include_vit: False for the cached-feature step (the ViT does not run).

    Returns:
        dict with `vit`, `qformers`, `llm` and `total` FLOPs.
    """
    v, q, vq, llm = cfg.vision, cfg.qformer, cfg.video_qformer, cfg.llm
    n_img = v.num_tokens
    # Frozen ViT, forward only: qkv + proj (4 w^2) and MLP (2 w m) per block, patch embedding, attention.
    vit_params = v.depth * (4 * v.width**2 + 2 * v.width * v.mlp_hidden)
    vit = n_frames * (2 * vit_params * n_img + 2 * 3 * v.patch_size**2 * v.width * (n_img - 1)
                      + v.depth * 4 * n_img**2 * v.width)
    # Frame Q-Former (trainable: 3x forward). Queries and timestamp text share self-attention; each
    # token goes through one FFN; every `cross_attention_freq`-th layer the queries attend the image.
    h, ffn, nq = q.hidden_size, q.intermediate_size, q.num_query_tokens
    s = nq + ts_len
    fq = 0.0
    for layer in range(q.num_layers):
        fq += 2 * (4 * h * h + 2 * h * ffn) * s + 4 * s * s * h
        if layer % q.cross_attention_freq == 0:
            fq += 2 * (2 * h * h * nq + 2 * v.width * h * n_img) + 4 * nq * n_img * h
    fq *= n_frames
    # Video Q-Former over sliding windows of frame outputs (rows per frame: queries [+ text in compat]).
    rows = nq + (ts_len if cfg.mode == "compat" else 0)
    n_win = math.ceil(n_frames / cfg.stride) if cfg.stride > 0 else 1
    win = min(cfg.window_size, n_frames) if cfg.stride > 0 else n_frames
    nv, enc = vq.num_query_tokens, win * rows
    fv = 0.0
    for layer in range(vq.num_layers):
        fv += 2 * (4 * h * h + 2 * h * ffn) * nv + 4 * nv * nv * h
        if layer % vq.cross_attention_freq == 0:
            fv += 2 * (2 * h * h * nv + 2 * h * h * enc) + 4 * nv * enc * h
    fv *= n_win
    n_video = cfg.num_video_tokens(n_frames)
    proj = 2 * h * llm.hidden_size * n_video
    qformers = 3 * (fq + fv + proj)
    # LLaMA: frozen base (fwd + activation grads = 4 P S), LoRA (6 P S), causal attention (3x fwd).
    d, kv = llm.hidden_size, llm.hidden_size * llm.num_kv_heads // llm.num_heads
    seq = n_text + n_video
    base = llm.num_layers * (2 * d * d + 2 * d * kv + 3 * d * llm.intermediate_size) + d * llm.vocab_size
    lora = 0
    if cfg.lora.enabled:
        dims = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
                "gate_proj": (d, llm.intermediate_size), "up_proj": (d, llm.intermediate_size),
                "down_proj": (llm.intermediate_size, d)}
        lora = llm.num_layers * sum(cfg.lora.r * sum(dims[m]) for m in cfg.lora.target_modules if m in dims)
    attn_fwd = llm.num_layers * 2 * seq * seq * d  # causal: half of 4 s^2 d
    lm = (4 * base + 6 * lora) * seq + 3 * attn_fwd
    vit = vit if include_vit else 0.0
    return {"vit": float(vit), "qformers": float(qformers), "llm": float(lm), "total": float(vit + qformers + lm)}


def llm_flops_per_sequence(cfg: TimeChatConfig, seq: int) -> float:
    """The LLM part of `flops_per_sample` for a text-only training sequence of `seq` tokens."""
    return flops_per_sample(cfg, 1, seq - cfg.num_video_tokens(1), 0, include_vit=False)["llm"]


def peak_bf16_flops(device_name: str) -> tuple[float, str] | None:
    """Dense bf16 peak of a GPU named `device_name` (as `torch.cuda.get_device_name` spells it).

    Returns:
        (FLOP/s, the `PEAK_BF16_TFLOPS` key that matched), or None for a device not in the table.
    """
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops * 1e12, key
    return None


def mfu(flop_per_s: float, peak_flop_per_s: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    return flop_per_s / peak_flop_per_s if peak_flop_per_s else None

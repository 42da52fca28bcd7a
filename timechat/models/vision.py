"""EVA ViT-g frame encoder and `ln_vision` (original `timechat/models/eva_vit.py`, `blip2.py`).

transformers' `InstructBlipVisionModel` computes exactly what the original EVA ViT-g computes with
TimeChat's settings: pre-norm blocks, one fused `qkv` projection whose bias is
cat(q_bias, 0, v_bias), q scaled by head_dim^-0.5, exact GELU, learned absolute positions with a
class token. Two differences are removed here:

* the HF model ends with `post_layernorm`; TimeChat uses the *un-normalised* output of the 39th
  block followed by its own `ln_vision`, so `post_layernorm` is replaced by an identity;
* HF's norm would use the ViT eps (1e-6) while `ln_vision` uses 1e-5 and computes in float32.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import InstructBlipVisionConfig, InstructBlipVisionModel

from timechat.models.config import VisionConfig


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm that normalises in float32 and returns the input dtype (the original `ln_vision`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.layer_norm(
            x.float(), self.normalized_shape, self.weight.float(), self.bias.float(), self.eps
        )
        return out.to(x.dtype)


class EvaViT(nn.Module):
    """EVA ViT-g without its final norm. Input (N, 3, H, W) -> (N, 1 + (H/p)*(W/p), width)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        hf_cfg = InstructBlipVisionConfig(
            hidden_size=cfg.width,
            intermediate_size=cfg.mlp_hidden,
            num_hidden_layers=cfg.depth,
            num_attention_heads=cfg.num_heads,
            image_size=cfg.image_size,
            patch_size=cfg.patch_size,
            hidden_act="gelu",
            layer_norm_eps=cfg.layer_norm_eps,
            attention_dropout=0.0,
            qkv_bias=True,
            # HF's vision default (1e-10) makes every weight ~0: a ViT trained from scratch would
            # start dead. EVA initialises with std 0.02 (pretrained weights overwrite it anyway).
            initializer_range=0.02,
        )
        hf_cfg._attn_implementation = "sdpa"
        if cfg.init_seed is None:
            self.model = InstructBlipVisionModel(hf_cfg)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.init_seed)
                self.model = InstructBlipVisionModel(hf_cfg)
        # TimeChat reads the last block's output directly; `ln_vision` follows outside this module.
        self.model.post_layernorm = nn.Identity()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixels).last_hidden_state

"""The two Q-Formers of TimeChat (paper §3.1-3.2; original `timechat/models/Qformer.py`).

* Frame Q-Former (timestamp-aware frame encoder): InstructBLIP's Q-Former. Learned queries are
  concatenated in front of the embedded text "This frame is sampled at {t} second.", one
  LayerNorm over both, bidirectional self-attention over [queries; text] with text padding masked,
  cross-attention to the ViT tokens for the query rows only on every `cross_attention_freq`-th
  layer, a query FFN and a text FFN. transformers' `InstructBlipQFormerModel` computes exactly this
  and returns the full (N, Q + L, D) sequence, which the `compat` mode keeps.
* Video Q-Former: 2 layers, cross-attention in every layer, queries only (no word/position
  embeddings, no text FFN). transformers' `Blip2QFormerModel` computes exactly this.
"""

from __future__ import annotations

from torch import nn
from transformers import Blip2QFormerConfig, Blip2QFormerModel, InstructBlipQFormerConfig, InstructBlipQFormerModel

from timechat.models.config import QFormerConfig, VideoQFormerConfig


def _bert_kwargs(cfg: QFormerConfig, num_layers: int, cross_attention_freq: int, encoder_width: int) -> dict:
    """The BERT settings both Q-Formers share (widths, dropout, norms, init)."""
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        hidden_act="gelu",
        hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.attention_dropout,
        max_position_embeddings=cfg.max_position_embeddings,
        layer_norm_eps=cfg.layer_norm_eps,
        cross_attention_frequency=cross_attention_freq,
        encoder_hidden_size=encoder_width,
        initializer_range=cfg.initializer_range,
    )


def build_frame_qformer(cfg: QFormerConfig, encoder_width: int) -> InstructBlipQFormerModel:
    """Frame Q-Former reading the ViT tokens (`encoder_width` = ViT width)."""
    hf_cfg = InstructBlipQFormerConfig(
        **_bert_kwargs(cfg, cfg.num_layers, cfg.cross_attention_freq, encoder_width), pad_token_id=0
    )
    hf_cfg._attn_implementation = "sdpa"
    return InstructBlipQFormerModel(hf_cfg)


def build_video_qformer(cfg: QFormerConfig, video_cfg: VideoQFormerConfig) -> Blip2QFormerModel:
    """Video Q-Former: queries cross-attend to the frame states of one window (width = Q-Former width)."""
    hf_cfg = Blip2QFormerConfig(
        **_bert_kwargs(cfg, video_cfg.num_layers, video_cfg.cross_attention_freq, cfg.hidden_size)
    )
    hf_cfg._attn_implementation = "sdpa"
    return Blip2QFormerModel(hf_cfg)


def init_query_tokens(num: int, width: int) -> nn.Parameter:
    """Learned queries, N(0, 0.02) as the original initialises them, shape (1, num, width)."""
    import torch

    tokens = nn.Parameter(torch.zeros(1, num, width))
    nn.init.normal_(tokens, std=0.02)
    return tokens

"""TimeChat: the composition of its parts (paper §3; original `timechat/models/timechat.py`).

    video (B, 3, T, H, W)
      -> EVA ViT-g + ln_vision (frozen)                         (B*T, N_img, D_v)
      -> timestamp-aware frame Q-Former (queries + frame time)  (B*T, Q [+ L_ts], D_q)
      -> + global frame position embedding, sliding windows of W frames every S frames
      -> video Q-Former per window                              (B, N_v, D_q) per window
      -> llama_proj                                             (B, N_v * ceil(T / S), D_llm)
      -> spliced over the `<ImageHere>` placeholders of the prompt
      -> LLaMA-2 (+ LoRA)

`forward(batch)` is the training path (loss and logits); `encode_batch_videos` + `build_context_embeds`
+ `timechat.models.generation.generate` are the inference path.

Long videos (not in the original, which stops at 96 frames): `cfg.frame_chunk_size` runs the ViT +
frame Q-Former over that many frames at a time (and the video Q-Former over that many frames' worth
of windows), so only the frame Q-Former outputs of the whole video are held at once;
`cfg.position_overflow` decides what a video longer than the frame-position table gets.

Every intermediate stage is either a submodule's output or the return value of a small method
(`add_frame_positions`, `video_windows`), so tools observe it from outside with forward hooks
(`timechat.reference.model.capture_stages`) and the model carries no debugging arguments.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from timechat.constants import BOS_TOKEN_ID, EOS_TOKEN_ID, IGNORE_INDEX, PAD_TOKEN_ID
from timechat.models.checkpoint import resize_frame_positions
from timechat.models.config import TimeChatConfig
from timechat.models.qformer import build_frame_qformer, build_video_qformer, init_query_tokens
from timechat.models.vision import EvaViT, LayerNormFp32


def build_llm_from_config(cfg: TimeChatConfig) -> LlamaForCausalLM:
    """A randomly initialised LLaMA of the configured shape (tests, tiny models, meta-device counts)."""
    llm_cfg = LlamaConfig(
        vocab_size=cfg.llm.vocab_size,
        hidden_size=cfg.llm.hidden_size,
        intermediate_size=cfg.llm.intermediate_size,
        num_hidden_layers=cfg.llm.num_layers,
        num_attention_heads=cfg.llm.num_heads,
        num_key_value_heads=cfg.llm.num_kv_heads,
        rms_norm_eps=cfg.llm.rms_norm_eps,
        rope_theta=cfg.llm.rope_theta,
        max_position_embeddings=cfg.llm.max_position_embeddings,
        tie_word_embeddings=cfg.llm.tie_word_embeddings,
        bos_token_id=BOS_TOKEN_ID,
        eos_token_id=EOS_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
        attention_bias=False,
        hidden_act="silu",
    )
    llm_cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(llm_cfg)


class TimeChat(nn.Module):
    """TimeChat model.

    Args:
        cfg: the architecture.
        llm: a ready LLaMA (e.g. loaded from a HF directory); built randomly from `cfg.llm` if None.
    """

    def __init__(self, cfg: TimeChatConfig, llm: LlamaForCausalLM | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        q = cfg.qformer
        self.visual_encoder = EvaViT(cfg.vision)
        self.ln_vision = LayerNormFp32(cfg.vision.width, eps=cfg.vision.ln_vision_eps)
        self.frame_qformer = build_frame_qformer(q, encoder_width=cfg.vision.width)
        self.query_tokens = init_query_tokens(q.num_query_tokens, q.hidden_size)
        self.frame_position_embedding = nn.Embedding(cfg.max_frame_pos, q.hidden_size)
        # BERT-style init; nn.Embedding's N(0, 1) would drown the frame content when training from
        # scratch (pretrained checkpoints overwrite it).
        nn.init.normal_(self.frame_position_embedding.weight, std=0.02)
        self.video_qformer = build_video_qformer(q, cfg.video_qformer)
        self.video_query_tokens = init_query_tokens(cfg.video_qformer.num_query_tokens, q.hidden_size)

        llm = llm if llm is not None else build_llm_from_config(cfg)
        llm.config.use_cache = False
        self.llm_hidden_size = llm.config.hidden_size
        self.llama_proj = nn.Linear(q.hidden_size, self.llm_hidden_size)
        # Training-only auxiliary head (model.frame_time_loss_weight; absent in TimeChat's configs).
        self.frame_time_head = (
            nn.Linear(self.llm_hidden_size, cfg.frame_time_bins) if cfg.frame_time_loss_weight > 0 else None
        )
        if cfg.gradient_checkpointing:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            llm.enable_input_require_grads()
            self.frame_qformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora.enabled:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model

            peft_cfg = PeftLoraConfig(
                task_type="CAUSAL_LM",
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules),
                bias="none",
                inference_mode=False,
            )
            llm = get_peft_model(llm, peft_cfg)
        self.llama_model = llm
        self.apply_freezing()

    # -- parameters -----------------------------------------------------------------------------
    @property
    def base_llm(self) -> LlamaForCausalLM:
        """The LLaMA under the LoRA wrapper (or the plain LLaMA without LoRA)."""
        model = self.llama_model
        return model.get_base_model() if hasattr(model, "get_base_model") else model

    def apply_freezing(self) -> None:
        """Set `requires_grad` from the config's per-module flags; frozen towers go to eval mode."""
        cfg = self.cfg
        groups = {
            "vit": (cfg.freeze_vit, [self.visual_encoder, self.ln_vision]),
            "qformer": (cfg.freeze_qformer, [self.frame_qformer]),
            "video": (cfg.freeze_video_qformer, [self.video_qformer, self.frame_position_embedding]),
            "proj": (cfg.freeze_llama_proj, [self.llama_proj]),
        }
        for frozen, modules in groups.values():
            for m in modules:
                m.requires_grad_(not frozen)
        self.query_tokens.requires_grad_(not cfg.freeze_qformer)
        self.video_query_tokens.requires_grad_(not cfg.freeze_video_qformer)
        for name, p in self.llama_model.named_parameters():
            p.requires_grad_(not cfg.freeze_lora if ".lora_" in name else not cfg.freeze_llm)

    def train(self, mode: bool = True) -> "TimeChat":
        super().train(mode)
        # Frozen towers never switch to train mode (the original's `disabled_train`).
        if self.cfg.freeze_vit:
            self.visual_encoder.eval()
            self.ln_vision.eval()
        return self

    def set_lora_alpha(self, alpha: float) -> None:
        """Change the LoRA scaling to alpha / r (the original's QA-benchmark trick, alpha 32 -> 20)."""
        if not self.cfg.lora.enabled:
            raise ValueError("set_lora_alpha: this model has no LoRA")
        for module in self.llama_model.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(scaling, dict) and "default" in scaling:
                module.scaling["default"] = alpha / module.r["default"]
        self.cfg.lora.alpha = alpha

    def cast_frozen(self, dtype: torch.dtype) -> None:
        """Store the frozen towers (ViT, LLM base weights) in `dtype`; trainable parts stay as they are."""
        self.visual_encoder.to(dtype)
        for name, p in self.llama_model.named_parameters():
            if not p.requires_grad:
                p.data = p.data.to(dtype)

    # -- one-directory checkpoints (timechat.models.pretrained) ---------------------------------
    def save_pretrained(self, directory: Any, **kwargs: Any) -> Any:
        """Write this model as one directory; see `timechat.models.pretrained.save_pretrained`."""
        from timechat.models.pretrained import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(cls, directory: Any, **kwargs: Any) -> "TimeChat":
        """Load a directory written by `save_pretrained`; see `timechat.models.pretrained.from_pretrained`."""
        from timechat.models.pretrained import from_pretrained

        return from_pretrained(directory, **kwargs)

    # -- visual path ----------------------------------------------------------------------------
    def encode_frames(self, pixels: torch.Tensor) -> torch.Tensor:
        """ViT + ln_vision on frames (N, 3, H, W) -> (N, N_img, D_v). Frozen: no graph is built."""
        grad = torch.is_grad_enabled() and not self.cfg.freeze_vit
        with torch.set_grad_enabled(grad):
            dtype = self.visual_encoder.model.embeddings.patch_embedding.weight.dtype
            feats = self.visual_encoder(pixels.to(dtype))
            return self.ln_vision(feats)

    def encode_video(
        self, pixels: torch.Tensor, ts_input_ids: torch.Tensor, ts_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Encode a batch of videos with the same frame count into LLM input tokens.

        Args:
            pixels: (B, 3, T, H, W) normalised frames.
            ts_input_ids: (B*T, L) timestamp-text ids (frame-major within each video).
            ts_attention_mask: (B*T, L) 1 for real tokens.
        Returns:
            (B, N_v * n_windows, D_llm) video tokens.
        """
        b, c, t, h, w = pixels.shape
        self._check_frame_rows(b, t, b * t, ts_input_ids.shape[0])
        frames = pixels.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)  # (B*T, 3, H, W)
        frame_states = self._over_frame_chunks(
            b * t, lambda s: self.encode_frame_states(self.encode_frames(frames[s]), ts_input_ids[s], ts_attention_mask[s])
        )  # (B*T, Q', D)
        return self.encode_from_frame_states(frame_states, b, t)

    def encode_from_features(
        self,
        image_features: torch.Tensor,
        b: int,
        t: int,
        ts_input_ids: torch.Tensor,
        ts_attention_mask: torch.Tensor,
    ) -> torch.Tensor:
        """The part of `encode_video` after the frozen ViT, from `ln_vision` outputs (B*T, N_img, D_v).

        This is also the entry point of the frozen-feature cache.

        Returns:
            (B, N_v * n_windows, D_llm) video tokens.
        """
        self._check_frame_rows(b, t, image_features.shape[0], ts_input_ids.shape[0])
        frame_states = self._over_frame_chunks(
            b * t, lambda s: self.encode_frame_states(image_features[s], ts_input_ids[s], ts_attention_mask[s])
        )  # (B*T, Q', D)
        return self.encode_from_frame_states(frame_states, b, t)

    @staticmethod
    def _check_frame_rows(b: int, t: int, image_rows: int, ts_rows: int) -> None:
        if image_rows != b * t or ts_rows != b * t:
            raise ValueError(
                f"expected {b * t} frame rows (B={b}, T={t}); got {image_rows} image rows and "
                f"{ts_rows} timestamp rows"
            )

    def _over_frame_chunks(self, n: int, encode: Any) -> torch.Tensor:
        """`encode(rows)` over frame rows ``0..n-1``: one call without `cfg.frame_chunk_size` (or when
        the batch fits one chunk), else one call per chunk, written into one (n, ...) output so
        that no second copy of the outputs is made."""
        chunk = self.cfg.frame_chunk_size
        if chunk is None or chunk >= n:
            return encode(slice(None))
        out = None
        for s in range(0, n, chunk):
            part = encode(slice(s, min(s + chunk, n)))
            if out is None:
                out = part.new_empty((n, *part.shape[1:]))
            out[s:s + part.shape[0]] = part
        return out

    def encode_frame_states(
        self, image_features: torch.Tensor, ts_input_ids: torch.Tensor, ts_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The timestamp-aware frame Q-Former on N frames: (N, N_img, D_v) -> (N, Q', D).

        Q' is Q + L in `compat` (all Q+L rows, the padded timestamp-text rows included, as the
        original keeps them) and Q in `fixed` (the query rows only, as InstructBLIP intends).
        """
        n = image_features.shape[0]
        image_features = image_features.to(self.query_tokens.dtype)
        nq = self.query_tokens.shape[1]
        queries = self.query_tokens.expand(n, -1, -1)  # (N, Q, D)
        attn = torch.cat([ts_attention_mask.new_ones(n, nq), ts_attention_mask], dim=1)  # (N, Q+L)
        frame_states = self.frame_qformer(
            input_ids=ts_input_ids,
            attention_mask=attn,
            query_embeds=queries,
            encoder_hidden_states=image_features,
        ).last_hidden_state  # (N, Q+L, D)
        if self.cfg.mode == "fixed":
            frame_states = frame_states[:, :nq]  # (N, Q, D)
        return frame_states

    def encode_from_frame_states(self, frame_states: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """Frame positions, sliding windows, video Q-Former and projection: (B*T, Q', D) -> (B, N_v * n_windows, D_llm)."""
        rows, d = frame_states.shape[1], frame_states.shape[2]
        frame_states = self.add_frame_positions(frame_states.reshape(b, t, rows, d))  # (B, T, Q', D)
        video_q = self.encode_windows(self.video_windows(frame_states))  # (B, N_v * n_windows, D)
        return self.llama_proj(video_q)  # (B, N_v * n_windows, D_llm)

    def add_frame_positions(self, frame_states: torch.Tensor) -> torch.Tensor:
        """Add frame t's position embedding to every row of frame t: (B, T, Q', D) -> (B, T, Q', D).

        This is how the video Q-Former learns frame order: its inputs are otherwise an unordered
        set of rows.
        """
        pos = self.frame_positions(frame_states.shape[1]).to(frame_states.device)  # (T, D)
        return frame_states + pos[None, :, None, :].to(frame_states.dtype)

    def frame_positions(self, t: int) -> torch.Tensor:
        """Position embeddings of frames ``0..t-1``: (t, D).

        Rows ``0..t-1`` of the table when it has that many (every `position_overflow` rule; the
        original's behaviour). Beyond: `cfg.position_overflow` (``nearest`` / ``linear`` resize the
        whole table to t rows, see `timechat.models.checkpoint.resize_frame_positions`).

        Raises:
            ValueError: t exceeds the table and the rule is ``error``.
        """
        table = self.frame_position_embedding
        rows = table.num_embeddings
        if t <= rows:
            return table(torch.arange(t, device=table.weight.device))  # (T, D)
        rule = self.cfg.position_overflow
        if rule == "error":
            raise ValueError(
                f"video has {t} frames but the frame-position table has {rows} rows (model.max_frame_pos); "
                "sample fewer frames (eval.num_frames / eval.max_frames, or the dataset's), or set "
                "model.position_overflow to 'nearest' or 'linear' to stretch the table"
            )
        return resize_frame_positions(table.weight, t, rule)  # (T, D)

    def video_windows(self, frame_states: torch.Tensor) -> list[torch.Tensor]:
        """Sliding windows over the frames, flattened into the video Q-Former's key/value sequence.

        Windows start every `stride` frames and hold up to `window_size` frames: the tail window is
        shorter, never padded (the original's `range(0, T, stride)` loop); stride 0 means one window.

        Args:
            frame_states: (B, T, Q', D) frame rows with positions added.
        Returns:
            per window, in order, (B, n_frames * Q', D).
        """
        b, t, rows, d = frame_states.shape
        return [frame_states[:, s:e].reshape(b, (e - s) * rows, d) for s, e in self.window_spans(t)]

    def window_spans(self, t: int) -> list[tuple[int, int]]:
        """(first, end) frame of each sliding window over t frames, in order."""
        window, stride = self.cfg.window_size, self.cfg.stride
        return [(s, min(s + window, t)) for s in range(0, t, stride)] if stride > 0 else [(0, t)]

    def encode_windows(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        """Video Q-Former over each window: N_v query tokens per window, concatenated in window order.

        Args:
            windows: per window (B, n_i * Q', D), as `video_windows` returns them.
        Returns:
            (B, N_v * n_windows, D).
        """
        # Windows of equal length (all but a short tail) are encoded together in one batched call.
        by_len: dict[int, list[int]] = defaultdict(list)
        for i, w in enumerate(windows):
            by_len[w.shape[1]].append(i)
        # With `frame_chunk_size`, a call takes at most that many frames' worth of windows (one at least).
        b, d = windows[0].shape[0], windows[0].shape[2]
        nv = self.video_query_tokens.shape[1]
        chunk = self.cfg.frame_chunk_size
        per_call = len(windows) if chunk is None else max(1, chunk // max(1, self.cfg.window_size))
        outputs: list[torch.Tensor] = [windows[0].new_empty(0)] * len(windows)
        for same_len in by_len.values():
            for c in range(0, len(same_len), per_call):
                idxs = same_len[c:c + per_call]
                win = torch.cat([windows[i] for i in idxs], dim=0)  # (K*B, n*Q', D), window-major
                queries = self.video_query_tokens.expand(win.shape[0], -1, -1)
                out = self.video_qformer(query_embeds=queries, encoder_hidden_states=win).last_hidden_state  # (K*B, Nv, D)
                out = out.reshape(len(idxs), b, nv, d)
                for k, i in enumerate(idxs):
                    outputs[i] = out[k]
        return torch.cat(outputs, dim=1)  # (B, Nv * n_windows, D)

    def encode_batch_videos(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """Encode the videos of a batch; returns one (N_tokens, D_llm) tensor per sample.

        The one entry point for every caller (`forward`, batched inference, the parity checks).
        The batch holds `timestamps` and either pixels under `images` or cached `ln_vision`
        features under `image_features`, in one of two layouts (`timechat.data.collate`):

        * stacked, when every video has the same frame count: `images` (B, 3, T, H, W) or
          `image_features` (B*T, N_img, D_v), `timestamps` {'input_ids', 'attention_mask'} (B*T, L);
          one batched encoding;
        * lists: per sample (3, T, H, W) pixels or (T, N_img, D_v) features and a timestamp dict
          (T, L); one encoding per sample.
        """
        ts = batch["timestamps"]
        feats = batch.get("image_features")
        from_features = feats is not None
        videos = feats if from_features else batch["images"]

        def encode(x: torch.Tensor, ts_b: dict[str, torch.Tensor], b: int) -> torch.Tensor:
            if from_features:  # (B*T, N_img, D_v)
                return self.encode_from_features(x, b, x.shape[0] // b, ts_b["input_ids"], ts_b["attention_mask"])
            return self.encode_video(x, ts_b["input_ids"], ts_b["attention_mask"])  # x: (B, 3, T, H, W)

        if isinstance(videos, torch.Tensor):
            if from_features:  # the feature cache flattens the frames, so B comes from the text batch
                b = batch["input_ids"].shape[0] if "input_ids" in batch else videos.shape[0]
            else:
                b = videos.shape[0]
            return list(encode(videos, ts, b))
        return [
            encode(x if from_features or x.dim() == 5 else x.unsqueeze(0), ts_b, 1)[0]
            for x, ts_b in zip(videos, ts)
        ]

    # -- language path --------------------------------------------------------------------------
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.base_llm.get_input_embeddings()(ids)

    def splice_video(self, input_ids: torch.Tensor, video_embeds: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token embeddings with the `<ImageHere>` run of each sample replaced by its video tokens.

        Raises:
            ValueError: naming the sample, if its placeholder count differs from its video token
                count (e.g. truncation cut the run) or the placeholders are not contiguous.
        """
        image_id = self.cfg.image_token_id
        is_img = input_ids == image_id
        # The placeholder id is outside the LLM vocabulary: look up id 0, then overwrite.
        embeds = self.embed_tokens(input_ids.masked_fill(is_img, 0))  # (B, L, D_llm)
        embeds = embeds.clone()
        for i, video in enumerate(video_embeds):
            positions = is_img[i].nonzero().flatten()
            n = video.shape[0]
            if positions.numel() != n:
                raise ValueError(
                    f"sample {i}: {positions.numel()} <ImageHere> placeholders but the video gives {n} tokens "
                    "(was the prompt truncated by max_txt_len?)"
                )
            first = int(positions[0])
            if int(positions[-1]) - first + 1 != n:
                raise ValueError(f"sample {i}: <ImageHere> placeholders are not contiguous")
            embeds[i, first:first + n] = video.to(embeds.dtype)
        return embeds

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Training forward: loss (mean over supervised tokens) and logits.

        Args:
            batch: collated batch with `images` (or `image_features`), `timestamps`, `input_ids`,
                `attention_mask`, `labels`.
        Returns:
            dict with `logits` (B, L, V) and, when the batch has `labels`, `loss` (mean over the
            supervised tokens).
        """
        video_embeds = self.encode_batch_videos(batch)
        inputs_embeds = self.splice_video(batch["input_ids"], video_embeds)
        llm_dtype = self.base_llm.get_input_embeddings().weight.dtype
        out = self.llama_model(
            inputs_embeds=inputs_embeds.to(llm_dtype),
            attention_mask=batch["attention_mask"],
            use_cache=False,
        )
        logits = out.logits
        labels = batch.get("labels")
        result: dict[str, Any] = {"logits": logits}
        if labels is not None:
            shift_logits = logits[:, :-1].float()
            shift_labels = labels[:, 1:]
            num_tokens = (shift_labels != IGNORE_INDEX).sum()
            loss_sum = F.cross_entropy(
                shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            )
            result["loss"] = loss_sum / num_tokens.clamp(min=1)
            if self.frame_time_head is not None and batch.get("frame_times") is not None:
                result["lm_loss"] = result["loss"]
                result["frame_time_loss"] = self.frame_time_loss(video_embeds, batch["frame_times"])
                result["loss"] = result["loss"] + self.cfg.frame_time_loss_weight * result["frame_time_loss"]
            if self.cfg.frame_text_loss_weight > 0:
                # Reported (as 0) even for a batch without `timed_text`, so every rank logs the same parts
                # (the log step all-reduces each one).
                words = batch.get("frame_words") or [None] * len(video_embeds)
                result.setdefault("lm_loss", result["loss"])
                result["frame_text_loss"] = self.frame_text_loss(video_embeds, words)
                result["loss"] = result["loss"] + self.cfg.frame_text_loss_weight * result["frame_text_loss"]
        return result

    def _token_windows(self, loss_name: str, video: torch.Tensor, num_frames: int) -> list[tuple[int, int]]:
        """`window_spans` of one sample's frames, checked against its video tokens (N_v per window)."""
        nv = self.video_query_tokens.shape[1]
        spans = self.window_spans(num_frames)
        if video.shape[0] != nv * len(spans):
            raise ValueError(f"{loss_name}: {video.shape[0]} video tokens for {num_frames} frames "
                             f"({len(spans)} windows of {nv} tokens)")
        return spans

    def frame_text_loss(self, video_embeds: Sequence[torch.Tensor],
                        frame_words: Sequence[Sequence[Sequence[int]] | None]) -> torch.Tensor:
        """Soft-target cross-entropy of the video tokens read through the LLM's output embeddings
        (model.frame_text_loss_weight).

        Args:
            video_embeds: per sample (N_v * n_windows, D_llm).
            frame_words: per sample None or, per frame, the token ids naming what it shows
                (`timechat.data.datasets.frame_text_ids`).
        Returns:
            scalar: the mean over the tokens of every window whose frames show something (a
            window's target spreads evenly over the union of its frames' ids); 0 (still attached
            to the graph) when no window does.
        """
        nv = self.video_query_tokens.shape[1]
        head = self.base_llm.get_output_embeddings()
        rows, targets = [], []
        for video, words in zip(video_embeds, frame_words):
            if words is None:
                continue
            spans = self._token_windows("frame_text_loss", video, len(words))
            for w, (s, e) in enumerate(spans):
                ids = sorted({i for frame in words[s:e] for i in frame})
                if not ids:
                    continue
                target = video.new_zeros(head.weight.shape[0], dtype=torch.float32)
                target[ids] = 1.0 / len(ids)
                rows.append(video[w * nv:(w + 1) * nv])
                targets.append(target.expand(nv, -1))
        if not rows:
            return torch.cat(list(video_embeds)).sum() * 0.0
        logits = head(torch.cat(rows).to(head.weight.dtype)).float()  # (n, V)
        return F.cross_entropy(logits, torch.cat(targets))

    def frame_time_loss(self, video_embeds: Sequence[torch.Tensor], frame_times: Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy of `frame_time_head` on every video token (model.frame_time_loss_weight).

        Args:
            video_embeds: per sample (N_v * n_windows, D_llm), as `encode_batch_videos` returns them.
            frame_times: per sample (T,) sampled frame times in seconds (`collate_train`).
        Returns:
            scalar; the target of a window's N_v tokens is the whole second of its frames' mean
            time, capped at `frame_time_bins - 1`.
        """
        nv = self.video_query_tokens.shape[1]
        targets = []
        for video, times in zip(video_embeds, frame_times):
            spans = self._token_windows("frame_time_loss", video, times.shape[0])
            # (+1e-6: a mean of 2.0 that rounding put at 1.9999999 is second 2)
            secs = torch.stack([times[s:e].double().mean() for s, e in spans]).add(1e-6).floor().long()
            targets.append(secs.clamp(0, self.cfg.frame_time_bins - 1).repeat_interleave(nv))
        tokens = torch.cat(list(video_embeds), dim=0)  # (ΣN, D_llm)
        logits = self.frame_time_head(tokens.to(self.frame_time_head.weight.dtype)).float()
        return F.cross_entropy(logits, torch.cat(targets).to(logits.device))

    def build_context_embeds(
        self, segments: Sequence[Sequence[Sequence[int]]], video_embeds: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference context: per sample [seg0, video, seg1, ...], left-padded into a batch.

        Args:
            segments: per sample, the token ids of the prompt pieces around the `<ImageHere>` mark
                (segment 0 carries BOS). A sample with k+1 segments takes k videos; here one.
            video_embeds: per sample (N_tokens, D_llm).
        Returns:
            (embeds (B, L_max, D_llm), attention_mask (B, L_max)); padding rows hold the
            embedding of id 0 and mask 0, as the original's batched chat does.
        """
        emb_layer = self.base_llm.get_input_embeddings()
        device = emb_layer.weight.device
        rows = []
        for segs, video in zip(segments, video_embeds):
            if len(segs) != 2:
                raise ValueError(f"expected 2 prompt segments around one <ImageHere>, got {len(segs)}")
            parts = [
                emb_layer(torch.as_tensor(segs[0], dtype=torch.long, device=device)),
                video.to(emb_layer.weight.dtype),
                emb_layer(torch.as_tensor(segs[1], dtype=torch.long, device=device)),
            ]
            rows.append(torch.cat(parts, dim=0))
        max_len = max(r.shape[0] for r in rows)
        pad = emb_layer(torch.zeros(1, dtype=torch.long, device=device))  # (1, D)
        embeds, masks = [], []
        for r in rows:
            n_pad = max_len - r.shape[0]
            embeds.append(torch.cat([pad.expand(n_pad, -1), r], dim=0))
            masks.append(torch.cat([torch.zeros(n_pad, dtype=torch.long), torch.ones(r.shape[0], dtype=torch.long)]))
        return torch.stack(embeds), torch.stack(masks).to(device)

"""Model parity against golden outputs of the original implementation (`reference_model` layout).

A fixture directory holds the tiny random weights in the original checkpoint layouts
(`checkpoints/`), a `manifest.json` (architecture under `model`, the merged original configs
under `reference_model_config`, tolerances), golden inputs and per-stage outputs
(`golden/train_forward.safetensors`, `golden/inference.safetensors`, `golden/generation.json`).
Everything here is derived from the manifest, so other fixtures (dimensions, frame counts,
windows, batch sizes) work unchanged.

The intermediate stages are observed from outside the model (`capture_stages`: forward hooks on
its submodules plus the return values of two small methods) during the same forward that gives
the logits and the loss, so `TimeChat` carries no parity arguments and nothing runs twice.
"""

from __future__ import annotations

import re
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import load_file

from timechat.io import read_json
from timechat.models.builders import ModelFiles, build_timechat
from timechat.models.config import (
    LLMConfig,
    LoraConfig,
    QFormerConfig,
    TimeChatConfig,
    VideoQFormerConfig,
    VisionConfig,
)
from timechat.models.generation import GenerationConfig, generate
from timechat.models.timechat import TimeChat
from timechat.reference.compare import ParityRow, compare_close, compare_exact


def config_from_manifest(model: dict[str, Any], ref_cfg: dict[str, Any] | None = None) -> TimeChatConfig:
    """Translate a fixture manifest's `model` block into a `TimeChatConfig` (compat mode)."""
    vit, q, vq, llama, lora = model["vit"], model["qformer"], model["video_qformer"], model["llama"], model["lora"]
    ref_cfg = ref_cfg or {}
    return TimeChatConfig(
        vision=VisionConfig(
            image_size=model["image_size"], patch_size=model.get("patch_size", 14), width=vit["embed_dim"],
            depth=vit["depth"], num_heads=vit["num_heads"], mlp_hidden=vit["mlp_hidden"],
            layer_norm_eps=vit.get("layernorm_eps", 1e-6), ln_vision_eps=model.get("ln_vision", {}).get("eps", 1e-5),
        ),
        qformer=QFormerConfig(
            hidden_size=q["hidden_size"], num_layers=q["num_hidden_layers"], num_heads=q["num_attention_heads"],
            intermediate_size=q["intermediate_size"], layer_norm_eps=q.get("layer_norm_eps", 1e-12),
            max_position_embeddings=q["max_position_embeddings"], vocab_size=q["vocab_size_resized"],
            num_query_tokens=q["num_query_token"], cross_attention_freq=q["cross_attention_freq"],
        ),
        video_qformer=VideoQFormerConfig(
            num_layers=vq["num_hidden_layers"], num_query_tokens=vq["num_query_token"],
            cross_attention_freq=vq.get("cross_attention_freq", 1),
        ),
        llm=LLMConfig(
            hidden_size=llama["hidden_size"], num_layers=llama["num_hidden_layers"],
            num_heads=llama["num_attention_heads"], num_kv_heads=llama.get("num_key_value_heads", llama["num_attention_heads"]),
            intermediate_size=llama["intermediate_size"], vocab_size=llama["vocab_size"],
            rms_norm_eps=llama["rms_norm_eps"], rope_theta=llama.get("rope_theta", 10000.0),
            max_position_embeddings=llama.get("max_position_embeddings", 4096),
        ),
        lora=LoraConfig(
            enabled=bool(ref_cfg.get("lora", True)), r=lora["r"], alpha=float(lora["lora_alpha"]),
            dropout=lora["lora_dropout"], target_modules=list(lora["target_modules"]),
        ),
        mode="compat",
        max_frame_pos=model["max_frame_pos"],
        window_size=model["window_size"],
        stride=model["stride"],
        image_token_id=llama["image_patch_token_id"],
        freeze_qformer=bool(ref_cfg.get("freeze_qformer", True)),
        freeze_video_qformer=bool(ref_cfg.get("frozen_video_Qformer", True)),
        freeze_llama_proj=bool(ref_cfg.get("frozen_llama_proj", True)),
        freeze_lora=bool(ref_cfg.get("lora_inference_mode", False)),
    )


def _files(ref_cfg: dict[str, Any], root: Path) -> ModelFiles:
    return ModelFiles(
        vit=ref_cfg.get("vit_model"), qformer=ref_cfg.get("q_former_model"), llama=ref_cfg.get("llama_model"),
        ckpt=ref_cfg.get("ckpt") or None, ckpt_2=ref_cfg.get("ckpt_2") or None, root=str(root),
    )


def _tolerances(manifest: dict[str, Any]) -> dict[str, dict[str, float]]:
    tol = manifest.get("tolerances", {})
    f32 = tol.get("float32", {"atol": 1e-5, "rtol": 1e-4})
    return {
        "float32": {"atol": f32.get("atol", 1e-5), "rtol": f32.get("rtol", 1e-4)},
        "logits": {"atol": tol.get("logits", f32).get("atol", 1e-4), "rtol": tol.get("logits", f32).get("rtol", 1e-4)},
        "loss": {"atol": tol.get("loss", {}).get("atol", 1e-5), "rtol": 0.0},
    }


def _split_videos(golden: dict[str, torch.Tensor]) -> tuple[Any, Any]:
    """Images and timestamp dicts of a golden file: stacked tensors, or per-sample `.{i}` entries."""
    if "pixels" in golden:
        ts = {"input_ids": golden["timestamps.input_ids"], "attention_mask": golden["timestamps.attention_mask"]}
        return golden["pixels"], ts
    idx = sorted({int(m.group(1)) for k in golden if (m := re.match(r"^pixels\.(\d+)$", k))})
    if not idx:
        return None, None
    images = [golden[f"pixels.{i}"] for i in idx]
    ts = [{"input_ids": golden[f"timestamps.{i}.input_ids"], "attention_mask": golden[f"timestamps.{i}.attention_mask"]}
          for i in idx]
    return images, ts


STAGES = ["vit_out", "vit_ln", "qformer_out", "frame_pos_emb", "frame_hidden_state", "video_qformer_out", "inputs_llama"]


@contextmanager
def capture_stages(model: TimeChat) -> Iterator[dict[str, list[Any]]]:
    """Record the intermediate stages of everything `model` runs inside the block.

    Module outputs (and inputs) are read with forward hooks; the two stages that are no module's
    output, the frame rows with positions added and the window inputs, are the return values of
    `TimeChat.add_frame_positions` / `TimeChat.video_windows`, wrapped on the instance for the
    duration of the block. Nothing is recomputed.

    Yields:
        stage name -> one value per call, in call order (one per encoded stacked batch or per
        sample of a list batch). `window_input` values are lists with one (B, n * Q', D) tensor
        per window; `inputs_embeds` is what the LLM received.
    """
    stages: dict[str, list[Any]] = defaultdict(list)

    def output_of(name: str, get: Callable[[Any], Any] = lambda out: out) -> Callable:
        return lambda module, args, out: stages[name].append(get(out))

    handles = [
        model.visual_encoder.register_forward_hook(output_of("vit_out")),
        model.ln_vision.register_forward_hook(output_of("vit_ln")),
        model.frame_qformer.register_forward_hook(output_of("qformer_out", lambda out: out.last_hidden_state)),
        model.frame_position_embedding.register_forward_hook(output_of("frame_pos_emb")),
        model.llama_proj.register_forward_pre_hook(lambda module, args: stages["video_qformer_out"].append(args[0])),
        model.llama_proj.register_forward_hook(output_of("inputs_llama")),
        model.llama_model.register_forward_pre_hook(
            lambda module, args, kwargs: stages["inputs_embeds"].append(kwargs["inputs_embeds"]), with_kwargs=True),
    ]
    methods = {"add_frame_positions": "frame_hidden_state", "video_windows": "window_input"}
    for method, name in methods.items():
        def recording(*args: Any, _call: Callable = getattr(model, method), _name: str = name, **kwargs: Any) -> Any:
            out = _call(*args, **kwargs)
            stages[_name].append(out)
            return out

        setattr(model, method, recording)
    try:
        yield stages
    finally:
        for handle in handles:
            handle.remove()
        for method in methods:
            delattr(model, method)  # the class's method shows through again


def _call_stages(stages: dict[str, list[Any]], k: int) -> dict[str, torch.Tensor]:
    """The stages of the k-th encoding call, named and shaped as the goldens store them."""
    out = {name: values[k] for name, values in stages.items() if name in STAGES and k < len(values)}
    if k < len(stages["window_input"]):
        out.update({f"window_input.{i}": w for i, w in enumerate(stages["window_input"][k])})
    if "frame_pos_emb" in out and "frame_hidden_state" in out:
        b = out["frame_hidden_state"].shape[0]
        out["frame_pos_emb"] = out["frame_pos_emb"][None].expand(b, -1, -1)  # (T, D) -> (B, T, D)
    return out


def _stage_rows(prefix: str, stages: dict[str, torch.Tensor], golden: dict[str, torch.Tensor],
                names: list[str], tol: dict[str, float]) -> list[ParityRow]:
    rows = []
    for name in names:
        if name not in golden:
            continue
        if name not in stages:
            rows.append(ParityRow(f"{prefix}/{name}", float("inf"), "-", False, "stage not produced"))
            continue
        rows.append(compare_close(f"{prefix}/{name}", stages[name], golden[name], **tol))
    return rows


def _encode_rows(stages: dict[str, list[Any]], images: Any, golden: dict[str, torch.Tensor], prefix: str,
                 tol: dict[str, float]) -> list[ParityRow]:
    """Compare the captured encoding stages: one call for stacked `images`, one per sample for a list."""
    if isinstance(images, torch.Tensor):
        window_names = sorted(k for k in golden if k.startswith("window_input."))
        return _stage_rows(prefix, _call_stages(stages, 0), golden, STAGES + window_names, tol)
    rows: list[ParityRow] = []
    for i in range(len(images)):
        per = {k[: -len(f".{i}")]: v for k, v in golden.items() if k.endswith(f".{i}") and not k.startswith("pixels")}
        rows += _stage_rows(f"{prefix}[{i}]", _call_stages(stages, i), per, STAGES, tol)
    return rows


def _build(cfg: TimeChatConfig, files: ModelFiles, via_pretrained: Path | None, name: str) -> tuple[TimeChat, list[str]]:
    """The model from the original files, or (`via_pretrained`) converted into a directory there by
    the checkpoint converter and loaded back with `TimeChat.from_pretrained`. Returns (model, load notes)."""
    if via_pretrained is None:
        model, reports = build_timechat(cfg, files)
        return model, [n for r in reports for n in r.notes]
    from timechat.models.pretrained import convert_original, read_directory_config

    section = {"name": "timechat_7b", "config": cfg.to_dict(),
               "files": {k: v for k, v in vars(files).items() if v is not None}}
    directory = convert_original(section, via_pretrained / name, overwrite=True)
    summaries = read_directory_config(directory)["provenance"].get("load_reports", [])
    notes = [part.strip() for s in summaries for part in s.split(";")[1:]]
    return TimeChat.from_pretrained(directory), notes + [f"via {directory.name}/"]


@torch.no_grad()
def check_reference_model(fixture_dir: str | Path, via_pretrained: str | Path | None = None) -> list[ParityRow]:
    """Compare every stage of the model against a `reference_model`-layout fixture.

    Args:
        fixture_dir: the fixture.
        via_pretrained: a scratch folder: each model is first converted from the original files into
            a pretrained directory there and loaded from it (the one-directory checkpoint path).
    """
    via = Path(via_pretrained) if via_pretrained is not None else None
    root = Path(fixture_dir)
    manifest = read_json(root / "manifest.json")
    ref = manifest.get("reference_model_config", {})
    eval_cfg = ref.get("eval") or {}
    tols = _tolerances(manifest)
    rows: list[ParityRow] = []
    torch.manual_seed(0)

    cfg = config_from_manifest(manifest["model"], eval_cfg)
    model, _ = _build(cfg, _files(eval_cfg, root), via, "eval")
    model.eval()
    if eval_cfg.get("lora_alpha") is not None and cfg.lora.enabled:
        model.set_lora_alpha(float(eval_cfg["lora_alpha"]))

    # -- training-style forward ---------------------------------------------------------------
    train_path = root / "golden" / "train_forward.safetensors"
    train = load_file(str(train_path)) if train_path.exists() else {}
    if train:
        images, ts = _split_videos(train)
        batch = {"images": images, "timestamps": ts, "input_ids": train["input_ids"],
                 "attention_mask": train["attention_mask"], "labels": train["labels"]}
        with capture_stages(model) as stages:
            out = model(batch)
        rows += _encode_rows(stages, images, train, "train", tols["float32"])
        rows.append(compare_close("train/inputs_embeds", stages["inputs_embeds"][0], train["inputs_embeds"],
                                  **tols["float32"]))
        rows.append(compare_close("train/logits", out["logits"], train["logits"], **tols["logits"]))
        rows.append(compare_close("train/loss", out["loss"], train["loss"], **tols["loss"]))

        tokenizer_dir = via / "eval" if via is not None else root / eval_cfg.get("llama_model", "checkpoints/llama-2-7b-chat-hf")
        rows += _end_to_end_rows(model, root, manifest, tokenizer_dir, train, tols)

    # -- inference path -----------------------------------------------------------------------
    inf_path = root / "golden" / "inference.safetensors"
    inf = load_file(str(inf_path)) if inf_path.exists() else {}
    if inf:
        rows += _check_inference(model, root, inf, train, tols)

    # -- the Video-LLaMA init: frame-position table resized on load ---------------------------
    frames_path = root / "inputs" / "frames.safetensors"
    init_cfg = ref.get("train_init")
    if init_cfg and frames_path.exists():
        frames = load_file(str(frames_path))
        if "frame_pos_interpolated_from_VL" in frames:
            cfg2 = config_from_manifest(manifest["model"], init_cfg)
            model2, notes = _build(cfg2, _files(init_cfg, root), via, "train_init")
            rows.append(compare_close("init/frame_pos_interpolated_from_VL", model2.frame_position_embedding.weight,
                                      frames["frame_pos_interpolated_from_VL"], **tols["float32"],
                                      note="; ".join(notes)))
    return rows


def _check_inference(model, root: Path, inf: dict[str, torch.Tensor], train: dict[str, torch.Tensor],
                     tols: dict[str, dict[str, float]]) -> list[ParityRow]:
    rows: list[ParityRow] = []
    images, ts = _split_videos(inf)
    if images is None:
        # The ViT stage is shared with the training run: same pixels, inference timestamp ids.
        images = train.get("pixels")
        if images is None:
            frames = load_file(str(root / "inputs" / "frames.safetensors"))
            images = frames["pixels"].unsqueeze(0)
        ts = {"input_ids": inf["timestamps.input_ids"], "attention_mask": inf["timestamps.attention_mask"]}
    with capture_stages(model) as stages:
        videos = model.encode_batch_videos({"images": images, "timestamps": ts})
    rows += _encode_rows(stages, images, inf, "inference", tols["float32"])

    n = len(videos)
    segments = []
    for i in range(n):
        segs = []
        j = 0
        while f"prompt.{i}.segment{j}_ids" in inf:
            segs.append(inf[f"prompt.{i}.segment{j}_ids"].tolist())
            j += 1
        segments.append(segs)
    if not all(segments):
        rows.append(ParityRow("inference/prompt_segments", float("inf"), "-", False, "no prompt.<i>.segment<j>_ids"))
        return rows
    ctx, mask = model.build_context_embeds(segments, videos)
    rows.append(compare_close("inference/context_embeds", ctx, inf["context_embeds"], **tols["float32"]))
    rows.append(compare_exact("inference/context_attention_mask", mask.tolist(),
                              inf["context_attention_mask"].long().tolist()))

    gen_json_path = root / "golden" / "generation.json"
    gen_json = read_json(gen_json_path) if gen_json_path.exists() else {}
    kwargs = gen_json.get("generate_kwargs", {})
    steps = int(inf["gen_scores"].shape[0]) if "gen_scores" in inf else int(kwargs.get("max_new_tokens", 16))
    gcfg = GenerationConfig(max_new_tokens=int(kwargs.get("max_new_tokens", steps)), do_sample=False,
                            max_context=10**9)
    out = generate(model.llama_model, ctx, mask, gcfg, keep_scores=True, keep_prefill_logits=True)
    if "prefill_logits" in inf:
        valid = inf["context_attention_mask"].bool()
        rows.append(compare_close("inference/prefill_logits[valid]", out.prefill_logits[valid],
                                  inf["prefill_logits"][valid], **tols["logits"]))
    want_seq = inf.get("gen_sequences")
    if want_seq is not None:
        want = want_seq[:, 1:]  # column 0 is the dummy BOS HF 4.34 put in front
        got = out.sequences
        rows += _compare_generated(got, want, out.scores, inf.get("gen_scores"), gcfg, tols["logits"])
    return rows


def _compare_generated(got: torch.Tensor, want: torch.Tensor, scores: list[torch.Tensor],
                       want_scores: torch.Tensor | None, gcfg: GenerationConfig, tol: dict[str, float]) -> list[ParityRow]:
    """Greedy ids must match up to (and including) each row's EOS; scores on the live steps."""
    rows = []
    got_rows, want_rows = [], []
    for b in range(want.shape[0]):
        w = want[b].tolist()
        if gcfg.eos_token_id in w:
            w = w[: w.index(gcfg.eos_token_id) + 1]
        g = got[b].tolist() if b < got.shape[0] else []
        g = g[: len(w)] if len(g) >= len(w) else g
        got_rows.append(g)
        want_rows.append(w)
    rows.append(compare_exact("inference/generated_ids", got_rows, want_rows))
    if want_scores is not None and scores:
        k = min(len(scores), want_scores.shape[0])
        live = torch.zeros(k, want.shape[0], dtype=torch.bool)
        for b, w in enumerate(want_rows):
            live[: min(k, len(w)), b] = True
        got_s = torch.stack(scores[:k])  # (steps, B, V)
        rows.append(compare_close("inference/gen_scores[live]", got_s[live], want_scores[:k][live], **tol,
                                  note=f"{int(live.sum())} live (step, row) pairs"))
    return rows


def _end_to_end_rows(model, root: Path, manifest: dict[str, Any], tokenizer_dir: Path,
                     train: dict[str, torch.Tensor], tols: dict[str, dict[str, float]]) -> list[ParityRow]:
    """From `inputs/video.mp4` + `inputs/instruct_sample.json` through this project's own data
    pipeline (decode, uniform sampling, eval transform, prompt, labels, LLaMA-tokenized timestamps,
    collation) and model: the loss must equal the golden loss."""
    from timechat.data.collate import collate_train
    from timechat.data.datasets import build_train_item, load_json_records
    from timechat.data.tokenization import LlamaTokenizer

    sample_path = root / "inputs" / "instruct_sample.json"
    if not sample_path.exists() or "loss" not in train:
        return []
    m = manifest["model"]
    tokenizer = LlamaTokenizer.from_pretrained(tokenizer_dir)
    items = []
    for i, record in enumerate(load_json_records(sample_path)):
        items.append(build_train_item(
            record, sample_path.parent / record["video"], tokenizer, tokenizer, sample_id=f"e2e[{i}]",
            num_frames=int(m.get("n_frms", 8)), image_size=int(m["image_size"]), sampling="uniform", train_aug=False,
            num_video_query_token=model.cfg.video_qformer.num_query_tokens, stride=model.cfg.stride,
            max_txt_len=int(m.get("max_txt_len", 2048)),
        ))
    batch = collate_train(items)
    rows = [compare_exact("e2e/input_ids", batch["input_ids"], train["input_ids"]),
            compare_exact("e2e/labels", batch["labels"], train["labels"])]
    if isinstance(batch["images"], torch.Tensor) and "pixels" in train:
        rows.append(compare_close("e2e/pixels", batch["images"], train["pixels"], **tols["float32"]))
    out = model(batch)
    rows.append(compare_close("e2e/loss", out["loss"], train["loss"], **tols["loss"]))
    return rows

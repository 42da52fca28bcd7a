"""One-directory checkpoints: save_pretrained / from_pretrained, sharding, PEFT adapters, key checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from timechat.factory import ASSETS_DIR
from timechat.models.builders import build_timechat, timechat_tiny
from timechat.models.pretrained import (
    ADAPTER_DIR,
    INDEX_FILE,
    WEIGHTS_FILE,
    PretrainedKeyError,
    load_base_llm,
    read_safetensors,
)
from timechat.models.timechat import TimeChat

TOKENIZERS = {"llama_tokenizer": ASSETS_DIR / "tiny_tokenizer", "bert_tokenizer": ASSETS_DIR / "tiny_bert"}


def tiny_model(seed: int = 0, **overrides) -> TimeChat:
    """A tiny model whose LoRA B matrices are non-zero (peft starts them at 0), so LoRA matters."""
    torch.manual_seed(seed)
    model, _ = build_timechat(timechat_tiny(**overrides))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(std=0.05)
    return model.eval()


def tiny_batch(model: TimeChat, t: int = 4) -> dict:
    torch.manual_seed(123)
    cfg = model.cfg
    n = cfg.num_video_tokens(t)
    ids = torch.tensor([[1, 5, 6, 7] + [cfg.image_token_id] * n + [9, 10, 11, 12]])
    ts = torch.randint(3, 100, (t, 5))
    return {"images": torch.randn(1, 3, t, cfg.vision.image_size, cfg.vision.image_size),
            "timestamps": {"input_ids": ts, "attention_mask": torch.ones_like(ts)},
            "input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def logits_of(model: TimeChat, batch: dict) -> torch.Tensor:
    return model(batch)["logits"]


def test_round_trip_is_bitwise(tmp_path):
    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt", **TOKENIZERS, provenance={"source": "random tiny"})
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"config.json", "llm_config.json", WEIGHTS_FILE, "generation_config.json", "README.md",
            "tokenizer.model", "tokenizer_config.json", "bert_tokenizer/vocab.txt",
            f"{ADAPTER_DIR}/adapter_config.json", f"{ADAPTER_DIR}/adapter_model.safetensors"} <= files
    config = json.loads((out / "config.json").read_text())
    assert config["format_version"] == 1 and config["config"]["mode"] == "compat"
    assert config["lora"]["storage"] == "adapter"
    assert json.loads((out / "generation_config.json").read_text())["do_sample"] is False
    card = (out / "README.md").read_text()
    assert "mode: `compat`" in card and "random tiny" in card and "evaluate.py" in card
    # every weight group is in the model file (ViT, ln_vision, both Q-Formers + queries, positions, proj, LLaMA)
    stored = set(read_safetensors(out / WEIGHTS_FILE))
    for prefix in ("visual_encoder.", "ln_vision.", "frame_qformer.", "query_tokens", "video_qformer.",
                   "video_query_tokens", "frame_position_embedding.", "llama_proj.", "llama_model.model.layers.",
                   "llama_model.lm_head."):
        assert any(k.startswith(prefix) for k in stored), prefix
    assert not any(".lora_" in k or "base_layer" in k for k in stored)

    loaded = TimeChat.from_pretrained(out).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert not [n for n, p in loaded.named_parameters() if p.is_meta]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == \
        [n for n, p in loaded.named_parameters() if p.requires_grad]
    batch = tiny_batch(model)
    assert torch.equal(logits_of(model, batch), logits_of(loaded, batch))


def test_merged_lora_matches_adapter(tmp_path):
    model = tiny_model()
    merged_dir = model.save_pretrained(tmp_path / "merged", merge_lora=True)
    assert not (merged_dir / ADAPTER_DIR).exists()
    config = json.loads((merged_dir / "config.json").read_text())
    assert config["lora"]["storage"] == "merged" and config["config"]["lora"]["enabled"] is False
    merged = TimeChat.from_pretrained(merged_dir).eval()
    assert not any(".lora_" in n for n, _ in merged.named_parameters())
    batch = tiny_batch(model)
    want = logits_of(model, batch)
    got = logits_of(merged, batch)
    assert (want - logits_of(tiny_model(seed=0, lora={"enabled": False}), batch)).abs().max() > 1e-3  # LoRA matters
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the model itself was not merged
    assert any(".lora_" in n for n, _ in model.named_parameters())


def test_peft_loads_the_adapter_onto_the_base_llama(tmp_path):
    from peft import PeftModel

    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt")
    base = load_base_llm(out)
    peft_model = PeftModel.from_pretrained(base, str(out / ADAPTER_DIR)).eval()
    ids = torch.randint(3, 700, (2, 9))
    with torch.no_grad():
        want = model.llama_model(input_ids=ids).logits
        got = peft_model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_lora_alpha_in_use_is_saved(tmp_path):
    model = tiny_model()
    model.set_lora_alpha(4.0)
    out = model.save_pretrained(tmp_path / "ckpt")
    assert json.loads((out / ADAPTER_DIR / "adapter_config.json").read_text())["lora_alpha"] == 4.0
    loaded = TimeChat.from_pretrained(out).eval()
    batch = tiny_batch(model)
    assert torch.equal(logits_of(model, batch), logits_of(loaded, batch))


def test_sharding_writes_an_index(tmp_path):
    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt", max_shard_size="200KB")
    assert not (out / WEIGHTS_FILE).exists()
    index = json.loads((out / INDEX_FILE).read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and all(s.startswith("model-") and s.endswith(f"-of-{len(shards):05d}.safetensors")
                                   for s in shards)
    held = {}
    for shard in shards:
        tensors = read_safetensors(out / shard)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        assert size <= 200_000 or len(tensors) == 1, shard
        held.update({k: shard for k in tensors})
    assert held == index["weight_map"]
    assert index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for s in shards for t in read_safetensors(out / s).values())
    loaded = TimeChat.from_pretrained(out).eval()
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_missing_key_names_key_and_file(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt")
    tensors = read_safetensors(out / WEIGHTS_FILE)
    del tensors["llama_proj.weight"]
    save_file(tensors, str(out / WEIGHTS_FILE))
    with pytest.raises(PretrainedKeyError) as err:
        TimeChat.from_pretrained(out)
    assert "'llama_proj.weight'" in str(err.value) and str(out / WEIGHTS_FILE) in str(err.value)


def test_unexpected_and_misshaped_keys_are_errors(tmp_path):
    from safetensors.torch import save_file

    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt")
    tensors = read_safetensors(out / WEIGHTS_FILE)
    save_file({**tensors, "llama_proj.extra": torch.zeros(2)}, str(out / WEIGHTS_FILE))
    with pytest.raises(PretrainedKeyError, match="unexpected weight 'llama_proj.extra'"):
        TimeChat.from_pretrained(out)
    save_file({**tensors, "llama_proj.bias": torch.zeros(3)}, str(out / WEIGHTS_FILE))
    with pytest.raises(PretrainedKeyError, match=r"'llama_proj.bias' has shape \(3,\)"):
        TimeChat.from_pretrained(out)
    adapter = read_safetensors(out / ADAPTER_DIR / "adapter_model.safetensors")
    save_file(tensors, str(out / WEIGHTS_FILE))
    key = next(iter(adapter))
    save_file({k: v for k, v in adapter.items() if k != key}, str(out / ADAPTER_DIR / "adapter_model.safetensors"))
    with pytest.raises(PretrainedKeyError) as err:
        TimeChat.from_pretrained(out)
    assert key in str(err.value) and "adapter_model.safetensors" in str(err.value)


def test_existing_directory_is_not_overwritten(tmp_path):
    model = tiny_model()
    out = model.save_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileExistsError):
        model.save_pretrained(out)
    model.save_pretrained(out, overwrite=True, merge_lora=True)
    assert json.loads((out / "config.json").read_text())["lora"]["storage"] == "merged"
    assert not list(tmp_path.glob(".ckpt.tmp-*"))


def test_bf16_round_trip_keeps_dtypes(tmp_path):
    model = tiny_model(dtype="bf16")
    model.cast_frozen(torch.bfloat16)
    out = model.save_pretrained(tmp_path / "ckpt")
    loaded = TimeChat.from_pretrained(out)
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype and torch.equal(got, v), k


def test_tied_embeddings_are_stored_once_and_tied_again(tmp_path):
    model = tiny_model(lora={"enabled": False}, freeze_llm=False, llm={"num_layers": 2, "tie_word_embeddings": True,
                                                                      "hidden_size": 128, "num_heads": 4,
                                                                      "num_kv_heads": 4, "intermediate_size": 256,
                                                                      "vocab_size": 768, "max_position_embeddings": 1024})
    assert model.base_llm.lm_head.weight is model.base_llm.model.embed_tokens.weight
    out = model.save_pretrained(tmp_path / "ckpt")
    assert "llama_model.lm_head.weight" not in read_safetensors(out / WEIGHTS_FILE)
    loaded = TimeChat.from_pretrained(out).eval()
    assert loaded.base_llm.lm_head.weight is loaded.base_llm.model.embed_tokens.weight
    names = [n for n, _ in loaded.named_parameters()]
    assert names == [n for n, _ in model.named_parameters()]
    batch = tiny_batch(model)
    assert torch.equal(logits_of(model, batch), logits_of(loaded, batch))


@pytest.mark.slow
def test_loading_holds_one_copy_of_the_weights(tmp_path):
    """scripts/measure_load_memory.py: a 1.3 GB random model's load raises the peak RSS by <= 1.3x its weights."""
    import subprocess
    import sys

    out = tmp_path / "mem.json"
    script = Path(__file__).resolve().parents[2] / "scripts" / "measure_load_memory.py"
    proc = subprocess.run([sys.executable, str(script), "--json", str(out)], capture_output=True, text=True, timeout=1200)
    figures = json.loads(out.read_text())
    assert figures["weights_mb"] >= 1000
    assert figures["peak_increase_over_weights"] <= 1.3, figures
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_failed_save_leaves_nothing(tmp_path):
    model = tiny_model()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        model.save_pretrained(tmp_path / "ckpt", bert_tokenizer=tmp_path)  # no vocab.txt there
    assert not list(tmp_path.iterdir())

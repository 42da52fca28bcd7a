"""Conversions to and from pretrained directories, and `model.pretrained` in configs."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from timechat.factory import build_model_and_tokenizers
from timechat.models.builders import build_timechat, count_parameters, timechat_7b
from timechat.models.checkpoint import read_checkpoint
from timechat.models.pretrained import (
    INDEX_FILE,
    convert_original,
    convert_step_folder,
    export_original,
    stored_name,
)
from timechat.models.timechat import TimeChat

REPO = Path(__file__).resolve().parents[2]


def fixture_section(root: Path, ckpt: str = "checkpoints/timechat_7b.pth") -> dict:
    from timechat.reference.model import config_from_manifest

    manifest = json.loads((root / "manifest.json").read_text())
    cfg = config_from_manifest(manifest["model"], manifest["reference_model_config"]["eval"])
    return {"name": "timechat_7b", "config": cfg.to_dict(),
            "files": {"root": str(root), "vit": "checkpoints/eva_vit_g.pth",
                      "qformer": "checkpoints/instruct_blip_vicuna7b_trimmed.pth",
                      "llama": "checkpoints/llama-2-7b-chat-hf", "ckpt": ckpt,
                      "bert_tokenizer": "checkpoints/bert-base-uncased"}}


def test_7b_meta_conversion_index_matches_the_parameter_list(tmp_path):
    """Spec §1.7-1.8: the 7B index lists every parameter with its shape; LoRA goes to the adapter."""
    out = convert_original({"name": "timechat_7b"}, tmp_path / "7b", meta=True)
    index = json.loads((out / INDEX_FILE).read_text())
    shapes = index["metadata"]["shapes"]
    adapter = index["metadata"]["adapter_shapes"]
    assert not list(out.glob("*.safetensors"))  # no weights were written
    with torch.device("meta"):
        model, _ = build_timechat(timechat_7b())
    want_model, want_adapter = {}, {}
    for name, p in model.named_parameters():
        where, key = stored_name(name)
        (want_adapter if where == "adapter" else want_model)[key] = list(p.shape)
    assert shapes == want_model and set(index["weight_map"]) == set(want_model)
    assert adapter == want_adapter

    def total(table: dict, *prefixes: str) -> int:
        return sum(math.prod(s) for k, s in table.items() if k.startswith(prefixes))

    assert total(adapter, "") == 33_554_432
    assert total(shapes, "llama_model.") + total(adapter, "") == 6_771_970_048
    assert total(shapes, "frame_qformer.") == 185_660_160
    assert total(shapes, "video_qformer.") == 18_905_088
    assert total(shapes, "llama_proj.") == 3_149_824
    trained = total(shapes, "frame_qformer.", "query_tokens", "video_qformer.", "video_query_tokens",
                    "llama_proj.", "frame_position_embedding.") + total(adapter, "")
    assert trained == 241_392_384
    assert index["metadata"]["total_parameters"] + total(adapter, "") == count_parameters(model)["total"]
    # fp32 (the preset's dtype): 4 bytes per parameter, in shards of at most 5 GB
    assert index["metadata"]["total_size"] == 4 * index["metadata"]["total_parameters"]
    assert len(set(index["weight_map"].values())) >= math.ceil(index["metadata"]["total_size"] / 5e9) > 1
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["llm"]["num_layers"] == 32 and config["lora"]["storage"] == "adapter"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 32


def test_fixture_files_to_directory_and_back(reference_model_dir, tmp_path):
    section = fixture_section(reference_model_dir)
    direct, tokenizers, _ = build_model_and_tokenizers(section)
    out = convert_original(section, tmp_path / "hf", max_shard_size="1MB")
    assert (out / INDEX_FILE).is_file() and (out / "tokenizer.model").is_file()
    assert (out / "bert_tokenizer" / "vocab.txt").is_file()
    provenance = json.loads((out / "config.json").read_text())["provenance"]
    assert provenance["files.ckpt"].endswith("timechat_7b.pth")
    loaded = TimeChat.from_pretrained(out)
    for k, v in direct.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    # back to the original layout: exactly the released file's keys and values
    pth = export_original(out, tmp_path / "timechat_7b.pth")
    exported, original = read_checkpoint(pth, allow_pickle=False), read_checkpoint(
        reference_model_dir / "checkpoints/timechat_7b.pth")
    assert set(exported) == set(original)
    for k, v in original.items():
        assert torch.equal(exported[k].to(v.dtype), v), k


def test_conversion_reads_pth_files_safely(reference_model_dir, tmp_path):
    sd = read_checkpoint(reference_model_dir / "checkpoints/timechat_7b.pth")
    bad = tmp_path / "pickled.pth"
    torch.save({"model": sd, "config": argparse.Namespace(lr=1e-4)}, bad)
    with pytest.raises(ValueError, match=r"pickled\.pth: torch\.load\(weights_only=True\) failed"):
        convert_original(fixture_section(reference_model_dir, str(bad)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # three converter subprocesses (~19 s); CI runs it
def test_cli_round_trip_and_merged_export_refused(reference_model_dir, tmp_path):
    cfg = tmp_path / "model.yaml"
    section = fixture_section(reference_model_dir)
    import yaml

    cfg.write_text(yaml.safe_dump({"model": section}))
    run = [sys.executable, str(REPO / "scripts" / "convert_checkpoint.py")]
    proc = subprocess.run(run + ["from-config", "--cfg-path", str(cfg), str(tmp_path / "merged"), "--merge-lora"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["lora"]["storage"] == "merged"
    proc = subprocess.run(run + ["to-original", str(tmp_path / "merged"), str(tmp_path / "x.pth")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "LoRA is merged" in proc.stderr
    assert not (tmp_path / "x.pth").exists()


def tiny_section(**config) -> dict:
    return {"name": "timechat_tiny", "config": config, "tokenizer": "builtin:tiny_tokenizer",
            "bert_tokenizer": "builtin:tiny_bert"}


def test_step_folder_to_directory(tmp_path):
    from omegaconf import OmegaConf

    from timechat.checkpoint import save_checkpoint

    section = tiny_section(vision={"init_seed": 0})
    torch.manual_seed(0)
    trained, _, _ = build_model_and_tokenizers(section)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(0.01)
    step = save_checkpoint(tmp_path / "run", 2, model=trained, config_text=OmegaConf.to_yaml({"model": section}))
    torch.manual_seed(0)  # the frozen random LLM of a from-scratch tiny model comes from the seed
    out = convert_step_folder(step, tmp_path / "hf")
    loaded = TimeChat.from_pretrained(out)
    for name, p in trained.named_parameters():
        assert torch.equal(p, loaded.state_dict()[name]), name
    assert "training step folder" in (out / "README.md").read_text()


def test_factory_builds_from_a_directory(tmp_path):
    torch.manual_seed(0)
    model, tokenizers, _ = build_model_and_tokenizers(tiny_section())
    out = model.save_pretrained(tmp_path / "hf", llama_tokenizer=tokenizers.llama.model_file.parent,
                                bert_tokenizer=REPO / "timechat/assets/tiny_bert")
    loaded, toks, reports = build_model_and_tokenizers({"pretrained": str(out)})
    assert reports[0].kind == "pretrained_dir"
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert toks.llama.model_file == out / "tokenizer.model" and toks.bert is not None
    assert toks.llama.encode("a red square") == tokenizers.llama.encode("a red square")
    # `config` overrides the saved config (here the LoRA alpha and the frozen parts)
    alpha, _, _ = build_model_and_tokenizers({"pretrained": str(out), "config": {"lora": {"alpha": 4.0},
                                                                                 "freeze_qformer": True}})
    scalings = {m.scaling["default"] for m in alpha.llama_model.modules() if isinstance(getattr(m, "scaling", None), dict)}
    assert scalings == {4.0 / model.cfg.lora.r}
    assert not any(p.requires_grad for p in alpha.frame_qformer.parameters())
    with pytest.raises(ValueError, match="model.files.vit"):
        build_model_and_tokenizers({"pretrained": str(out), "files": {"vit": "eva_vit_g.pth"}})
    with pytest.raises(KeyError, match="num_layer"):
        build_model_and_tokenizers({"pretrained": str(out), "config": {"llm": {"num_layer": 1}}})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_model_and_tokenizers({"pretrained": str(tmp_path / "nowhere")})


def test_pretrained_key_in_a_config(tmp_path):
    from timechat.config import load_config, resolve_config

    cfg = load_config(REPO / "eval_configs" / "tiny_synthetic.yaml", [f"model.pretrained={tmp_path}"])
    assert resolve_config(cfg)["model"]["pretrained"] == str(tmp_path)


def test_evaluate_from_a_directory_gives_the_same_answers(tmp_path):
    """evaluate.py's model path (eval.run) with model.pretrained equals the run from the config's model."""
    from timechat.config import eval_config, load_config, resolve_config
    from timechat.data.synthetic import generate_synthetic_dataset
    from timechat.eval.run import build_eval_model, run_evaluation

    data = tmp_path / "data"
    generate_synthetic_dataset(data / "synthetic", num_train=0, num_val=0, num_test=2, duration=(4.0, 5.0),
                               fps=4.0, size=32, max_events=1, min_event_duration=2.0)

    def overrides(out: Path, *extra: str) -> list[str]:
        values = {"paths.data_root": data, "paths.output_root": tmp_path, "output_dir": out, "eval.checkpoint": "null",
                  "eval.num_frames": 4, "eval.max_new_tokens": 6, "eval.batch_size": 2, "eval.num_workers": 0,
                  "eval.plot_samples": 0}
        return [f"{k}={v}" for k, v in values.items()] + list(extra)

    cfg_path = REPO / "eval_configs" / "tiny_synthetic.yaml"
    cfg = load_config(cfg_path, overrides(tmp_path / "a"))
    resolved = resolve_config(cfg)
    model, tokenizers, _, _ = build_eval_model(resolved, eval_config(cfg), torch.device("cpu"))
    hf = model.save_pretrained(tmp_path / "hf", llama_tokenizer=tokenizers.llama.model_file.parent,
                               bert_tokenizer=REPO / "timechat/assets/tiny_bert")
    first = run_evaluation(cfg)
    second = run_evaluation(load_config(cfg_path, overrides(tmp_path / "b", f"model.pretrained={hf}",
                                                            "model.tokenizer=null", "model.bert_tokenizer=null")))
    a = json.loads((tmp_path / "a" / "results.json").read_text())
    b = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [e["answer"] for e in a] == [e["answer"] for e in b] and len(a) == 2
    assert first["metrics"] == second["metrics"]


@pytest.mark.slow  # a second model-fixture parity run through a directory (~12 s); CI runs it
def test_parity_tool_via_pretrained(reference_model_dir, reference_model_parity, tmp_path):
    """Every stage of the normal run, within the same tolerances, on the model loaded from a directory."""
    from timechat.reference.compare import ParityRow

    rows_file = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "check_reference_parity.py"), str(reference_model_dir),
                           "--via-pretrained", "--json", str(rows_file)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [ParityRow(**r) for r in json.loads(rows_file.read_text())]
    assert [r.name for r in rows] == [r.name for r in reference_model_parity.rows]
    assert all(r.ok for r in rows) and f"{len(rows)} passed, 0 failed" in proc.stdout
    assert "via train_init/" in next(r.note for r in rows if r.name == "init/frame_pos_interpolated_from_VL")
    assert not (reference_model_dir / "eval").exists()  # the directories went to a temporary folder

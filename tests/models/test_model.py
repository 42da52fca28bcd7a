"""Model tests: parity with the original, parameter counts, loaders, windows, decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from timechat.models.builders import ModelFiles, build_timechat, count_parameters, timechat_7b, timechat_tiny
from timechat.models.checkpoint import CheckpointKeyError, export_original_state_dict, read_checkpoint
from timechat.models.generation import GenerationConfig, generate
from timechat.reference.model import capture_stages


def test_reference_model_parity(reference_model_parity, reference_model_dir):
    run = reference_model_parity
    model_rows = [r for r in run.rows if not r.name.startswith("data/")]
    assert model_rows and not [r for r in model_rows if not r.ok], run.stdout[-3000:]
    names = {r.name for r in model_rows}
    # every stage the issue lists is really compared
    for stage in ["train/vit_out", "train/vit_ln", "train/qformer_out", "train/frame_pos_emb",
                  "train/frame_hidden_state", "train/window_input.0", "train/video_qformer_out",
                  "train/inputs_llama", "train/inputs_embeds", "train/logits", "train/loss",
                  "inference/qformer_out", "inference/window_input.0", "inference/context_embeds",
                  "inference/prefill_logits[valid]", "inference/generated_ids",
                  "init/frame_pos_interpolated_from_VL", "e2e/loss"]:
        assert stage in names
    # the tool ran on a copy: every path comes from the manifest, relative to the fixture folder
    assert run.fixture_dir != reference_model_dir and run.fixture_dir.name == "fixture"


def test_parity_script_exit_code(reference_model_parity):
    run = reference_model_parity
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "train/logits" in run.stdout and "FAIL" not in run.stdout
    assert f"{len(run.rows)} passed, 0 failed" in run.stdout


def test_7b_parameter_counts_on_meta():
    with torch.device("meta"):
        model, _ = build_timechat(timechat_7b())
    counts = count_parameters(model)
    assert counts["trainable"] == 241_392_384
    assert counts["lora"] == 33_554_432
    assert counts["module:frame_qformer"] == 185_660_160
    assert counts["module:video_qformer"] == 18_905_088
    assert counts["module:llama_proj"] == 3_149_824
    # LLaMA-2-7B + LoRA, as the original's peft summary prints it
    assert counts["module:llama_model"] == 6_771_970_048


def _fixture_files(root: Path, ckpt: str) -> ModelFiles:
    return ModelFiles(vit="checkpoints/eva_vit_g.pth", qformer="checkpoints/instruct_blip_vicuna7b_trimmed.pth",
                      llama="checkpoints/llama-2-7b-chat-hf", ckpt=ckpt, root=str(root))


def _fixture_cfg(root: Path):
    import json

    from timechat.reference.model import config_from_manifest

    manifest = json.loads((root / "manifest.json").read_text())
    return config_from_manifest(manifest["model"], manifest["reference_model_config"]["eval"])


def test_missing_required_key_names_key_and_file(reference_model_dir, tmp_path):
    sd = read_checkpoint(reference_model_dir / "checkpoints/timechat_7b.pth")
    del sd["llama_proj.weight"]
    bad = tmp_path / "timechat_missing.pth"
    torch.save({"model": sd}, bad)
    with pytest.raises(CheckpointKeyError) as err:
        build_timechat(_fixture_cfg(reference_model_dir), _fixture_files(reference_model_dir, str(bad)))
    assert "llama_proj.weight" in str(err.value) and str(bad) in str(err.value)


def test_partial_lora_group_is_an_error(reference_model_dir, tmp_path):
    sd = read_checkpoint(reference_model_dir / "checkpoints/timechat_7b.pth")
    key = next(k for k in sd if ".lora_B." in k)
    del sd[key]
    bad = tmp_path / "partial_lora.pth"
    torch.save({"model": sd}, bad)
    with pytest.raises(CheckpointKeyError, match="lora"):
        build_timechat(_fixture_cfg(reference_model_dir), _fixture_files(reference_model_dir, str(bad)))


def test_missing_file_is_reported(reference_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_timechat(_fixture_cfg(reference_model_dir), _fixture_files(reference_model_dir, str(tmp_path / "nope.pth")))


def test_export_matches_original_key_set_and_roundtrips(reference_model_dir, tmp_path):
    """A model in the training configuration exports exactly the original runner's key set."""
    cfg = _fixture_cfg(reference_model_dir)
    cfg.freeze_qformer = cfg.freeze_video_qformer = cfg.freeze_llama_proj = cfg.freeze_lora = False
    model, _ = build_timechat(cfg, _fixture_files(reference_model_dir, "checkpoints/timechat_7b.pth"))
    model.apply_freezing()
    exported = export_original_state_dict(model)
    original = read_checkpoint(reference_model_dir / "checkpoints/timechat_7b.pth")
    assert set(exported) == set(original)
    for k, v in original.items():
        assert torch.equal(exported[k].to(v.dtype), v), k
    out = tmp_path / "export.pth"
    torch.save({"model": exported}, out)
    model2, reports = build_timechat(cfg, _fixture_files(reference_model_dir, str(out)))
    assert not reports[-1].unexpected
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), model2.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2), n1


def _tiny(**kw):
    torch.manual_seed(0)
    model, _ = build_timechat(timechat_tiny(**kw))
    return model.eval()


@pytest.mark.parametrize("t,window,stride,expected", [(70, 32, 32, 3), (20, 32, 32, 1), (10, 4, 3, 4), (9, 4, 0, 1)])
def test_window_token_counts(t, window, stride, expected):
    model = _tiny(max_frame_pos=96, window_size=window, stride=stride)
    cfg = model.cfg
    pixels = torch.randn(1, 3, t, cfg.vision.image_size, cfg.vision.image_size)
    ids = torch.randint(3, 100, (t, 5))
    with capture_stages(model) as stages:
        video = model.encode_video(pixels, ids, torch.ones_like(ids))
    nv = cfg.video_qformer.num_query_tokens
    assert video.shape == (1, nv * expected, cfg.llm.hidden_size)
    assert cfg.num_video_tokens(t) == nv * expected
    windows = stages["window_input"][0]
    assert len(windows) == expected
    # overlapping windows with a short tail: the tail window holds the remaining frames only
    if stride > 0:
        last_start = (expected - 1) * stride
        rows = nv + 5
        assert windows[-1].shape[1] == (min(last_start + window, t) - last_start) * rows


def test_window_batching_equals_one_by_one():
    """Equal-length windows are batched together; results equal window-by-window encoding."""
    model = _tiny(max_frame_pos=96, window_size=4, stride=3)
    t = 11
    pixels = torch.randn(1, 3, t, 56, 56)
    ids = torch.randint(3, 100, (t, 6))
    mask = torch.ones_like(ids)
    with capture_stages(model) as stages:
        video = model.encode_video(pixels, ids, mask)
    frame = stages["frame_hidden_state"][0]
    outs = []
    for s in range(0, t, 3):
        win = frame[:, s:s + 4].reshape(1, -1, frame.shape[-1])
        q = model.video_query_tokens.expand(1, -1, -1)
        outs.append(model.llama_proj(model.video_qformer(query_embeds=q, encoder_hidden_states=win).last_hidden_state))
    torch.testing.assert_close(video, torch.cat(outs, dim=1), atol=1e-6, rtol=1e-5)


def test_too_many_frames_is_a_clear_error():
    model = _tiny()
    t = model.cfg.max_frame_pos + 1
    ids = torch.randint(3, 100, (t, 4))
    with pytest.raises(ValueError, match="max_frame_pos"):
        model.encode_video(torch.randn(1, 3, t, 56, 56), ids, torch.ones_like(ids))


def test_fixed_mode_ignores_timestamp_padding_compat_does_not():
    pixels = torch.randn(1, 3, 4, 56, 56)
    ids = torch.randint(3, 100, (4, 6))
    padded = torch.cat([ids, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    mask, pmask = torch.ones_like(ids), torch.cat([torch.ones_like(ids), torch.zeros(4, 3, dtype=torch.long)], 1)
    fixed = _tiny(mode="fixed")
    a = fixed.encode_video(pixels, ids, mask)
    b = fixed.encode_video(pixels, padded, pmask)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    compat = _tiny(mode="compat")
    a = compat.encode_video(pixels, ids, mask)
    b = compat.encode_video(pixels, padded, pmask)
    assert (a - b).abs().max() > 1e-4  # the padded text rows reach the video Q-Former (issue #28)


def test_splice_rejects_truncated_placeholders():
    model = _tiny()
    video = [torch.randn(8, model.cfg.llm.hidden_size)]
    ids = torch.tensor([[1, 5, 6] + [model.cfg.image_token_id] * 7 + [9]])
    with pytest.raises(ValueError, match="sample 0: 7 <ImageHere>"):
        model.splice_video(ids, video)


def test_batched_greedy_generation_equals_single():
    model = _tiny()
    torch.manual_seed(1)
    videos = [torch.randn(8, model.cfg.llm.hidden_size), torch.randn(8, model.cfg.llm.hidden_size)]
    segments = [[[1, 20, 21, 22], [30, 31]], [[1, 20], [30, 31, 32, 33, 34, 35, 36]]]
    cfg = GenerationConfig(max_new_tokens=6, eos_token_id=-1)
    ctx, mask = model.build_context_embeds(segments, videos)
    assert mask.tolist()[0][:3] == [0, 0, 0]  # left padding
    batched = generate(model.llama_model, ctx, mask, cfg).sequences
    for i in range(2):
        c, m = model.build_context_embeds([segments[i]], [videos[i]])
        single = generate(model.llama_model, c, m, cfg).sequences
        assert batched[i].tolist() == single[0].tolist()


def test_sampling_is_seeded_and_really_samples():
    model = _tiny()
    ctx, mask = model.build_context_embeds([[[1, 20, 21], [30]]], [torch.randn(8, model.cfg.llm.hidden_size)])

    def ids(**kw) -> list:
        cfg = GenerationConfig(max_new_tokens=8, eos_token_id=-1, **kw)
        return generate(model.llama_model, ctx, mask, cfg).sequences.tolist()

    greedy = ids()
    sampled = {seed: ids(do_sample=True, top_p=0.8, temperature=1.0, seed=seed) for seed in range(4)}
    for seed, got in sampled.items():
        assert ids(do_sample=True, top_p=0.8, temperature=1.0, seed=seed) == got  # same seed, same ids
    assert any(got != greedy for got in sampled.values())  # do_sample is not ignored
    assert len({str(got) for got in sampled.values()}) > 1  # the seed reaches the sampler


def test_lora_alpha_override_changes_scaling():
    model = _tiny()
    model.set_lora_alpha(4.0)
    scalings = [m.scaling["default"] for m in model.llama_model.modules() if isinstance(getattr(m, "scaling", None), dict)]
    assert scalings and all(s == 4.0 / model.cfg.lora.r for s in scalings)


def test_training_config_trainable_flags():
    model = _tiny()
    for name, p in model.named_parameters():
        if name.startswith(("visual_encoder.", "ln_vision.")):
            assert not p.requires_grad, name
        elif name.startswith("llama_model."):
            assert p.requires_grad == (".lora_" in name), name
        else:
            assert p.requires_grad, name


def test_vit_init_seed_makes_a_frozen_random_vit_reproducible():
    from timechat.models.config import VisionConfig
    from timechat.models.vision import EvaViT

    cfg = VisionConfig(image_size=28, width=32, depth=1, num_heads=2, mlp_hidden=64, init_seed=7)
    torch.manual_seed(1)
    a = EvaViT(cfg).state_dict()
    torch.manual_seed(2)
    b = EvaViT(cfg).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert float(a["model.encoder.layers.0.mlp.fc1.weight"].std()) > 0.01  # EVA-style init, not ~0
    torch.manual_seed(3)
    x = torch.rand(1)
    torch.manual_seed(3)
    EvaViT(cfg)
    assert torch.equal(torch.rand(1), x)  # building with init_seed does not consume the global RNG


def test_encode_batch_videos_layouts_agree():
    """Stacked pixels, per-sample lists and cached ln_vision features give the same video tokens."""
    model = _tiny()
    t, size = 4, model.cfg.vision.image_size
    pixels = torch.randn(2, 3, t, size, size)
    ids = torch.randint(3, 100, (2 * t, 5))
    ts = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    per_sample = [{k: v[i * t:(i + 1) * t] for k, v in ts.items()} for i in range(2)]
    with torch.no_grad():
        stacked = model.encode_batch_videos({"images": pixels, "timestamps": ts})
        listed = model.encode_batch_videos({"images": list(pixels), "timestamps": per_sample})
        feats = model.encode_frames(pixels.permute(0, 2, 1, 3, 4).reshape(2 * t, 3, size, size))  # (B*T, N, D)
        cached = model.encode_batch_videos({"image_features": feats, "timestamps": ts, "input_ids": ids[:2]})
        cached_list = model.encode_batch_videos({"image_features": list(feats.reshape(2, t, *feats.shape[1:])),
                                                 "timestamps": per_sample})
    assert len(stacked) == 2 and stacked[0].shape == (model.cfg.num_video_tokens(t), model.cfg.llm.hidden_size)
    for other in (listed, cached, cached_list):
        for a, b in zip(stacked, other):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_capture_stages_leaves_the_model_as_it_was():
    model = _tiny()
    t, size = 4, model.cfg.vision.image_size
    ids = torch.randint(3, 100, (t, 5))

    def hook_count() -> int:
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = hook_count()
    with torch.no_grad(), capture_stages(model) as stages:
        video = model.encode_video(torch.randn(1, 3, t, size, size), ids, torch.ones_like(ids))
    assert torch.equal(stages["inputs_llama"][0], video)
    assert stages["frame_hidden_state"][0].shape[:2] == (1, t)
    assert "add_frame_positions" not in vars(model) and "video_windows" not in vars(model)
    assert hook_count() == before


def test_frame_time_loss_targets_and_total():
    """model.frame_time_loss_weight: each window's tokens are classified into the whole second of its
    frames' mean time (capped at the last bin), and the training loss adds it with that weight."""
    model = _tiny(window_size=2, stride=2, frame_time_loss_weight=0.5, frame_time_bins=4)
    nv, d = model.video_query_tokens.shape[1], model.llm_hidden_size
    times = torch.tensor([0.2, 0.9, 1.4, 2.6, 5.0])  # windows (0, 2) (2, 4) (4, 5): means 0.55, 2.0, 5.0
    video = torch.randn(3 * nv, d)
    want = torch.nn.functional.cross_entropy(model.frame_time_head(video), torch.tensor([0, 2, 3]).repeat_interleave(nv))
    torch.testing.assert_close(model.frame_time_loss([video], [times]), want)
    with pytest.raises(ValueError, match="frame_time_loss: 7 video tokens for 5 frames"):
        model.frame_time_loss([video[:7]], [times])

    t, size = 4, model.cfg.vision.image_size
    ids = torch.tensor([[1, 5] + [model.cfg.image_token_id] * model.cfg.num_video_tokens(t) + [7, 8, 9]])
    ts = torch.randint(3, 100, (t, 5))
    batch = {"images": torch.randn(1, 3, t, size, size), "timestamps": {"input_ids": ts, "attention_mask": torch.ones_like(ts)},
             "input_ids": ids, "attention_mask": torch.ones_like(ids),
             "labels": torch.where(torch.arange(ids.shape[1]) >= ids.shape[1] - 3, ids, torch.full_like(ids, -100)),
             "frame_times": [torch.tensor([0.0, 1.5, 3.0, 4.5])]}
    out = model(batch)
    assert out["frame_time_loss"] > 0
    torch.testing.assert_close(out["loss"], out["lm_loss"] + 0.5 * out["frame_time_loss"])

    plain = _tiny(window_size=2, stride=2)  # the default: no head, no extra loss, same parameter names as before
    assert plain.frame_time_head is None and not any("frame_time" in n for n, _ in plain.named_parameters())
    out = plain(batch)
    assert "frame_time_loss" not in out and "lm_loss" not in out


def test_collate_gives_frame_times_from_the_clips():
    from timechat.data.collate import collate_train
    from timechat.data.video import VideoClip

    def item(indices, fps):
        clip = VideoClip(frames=torch.zeros(len(indices), 2, 2, 3, dtype=torch.uint8), indices=indices, fps=fps,
                         vlen=100, timestamps=[str(round(i / fps, 1)) for i in indices], msg="")
        ts = {"input_ids": torch.ones(len(indices), 3, dtype=torch.long), "attention_mask": torch.ones(len(indices), 3)}
        return {"input_ids": [1, 5], "labels": [-100, 5], "images": torch.zeros(3, len(indices), 4, 4),
                "timestamps": ts, "clip": clip}

    batch = collate_train([item([0, 3, 6], 2.0), item([0, 10, 20], 29.97)])
    assert [t.tolist() for t in batch["frame_times"]] == [[0.0, 1.5, 3.0], pytest.approx([0.0, 10 / 29.97, 20 / 29.97])]
    assert "frame_times" not in collate_train([{**item([0, 3], 2.0), "clip": None}])


def test_frame_text_loss_reads_the_tokens_through_the_output_embeddings():
    """model.frame_text_loss_weight: each window's tokens, through the LLM's output embeddings, are
    pulled towards the union of its frames' word ids; windows showing nothing are left out."""
    model = _tiny(window_size=2, stride=2, frame_text_loss_weight=2.0)
    nv, d = model.video_query_tokens.shape[1], model.llm_hidden_size
    video = torch.randn(3 * nv, d)
    words = [[5, 6], [6, 9], [], [], [7]]  # windows (0, 2) (2, 4) (4, 5): {5, 6, 9}, nothing, {7}
    logits = model.base_llm.get_output_embeddings()(torch.cat([video[:nv], video[2 * nv:]]))
    target = torch.zeros(2 * nv, logits.shape[1])
    target[:nv, [5, 6, 9]] = 1 / 3
    target[nv:, 7] = 1.0
    want = torch.nn.functional.cross_entropy(logits, target)
    torch.testing.assert_close(model.frame_text_loss([video, video], [words, None]), want)
    nothing = model.frame_text_loss([video.clone().requires_grad_()], [[[]] * 5])
    assert nothing.item() == 0.0 and nothing.requires_grad  # stays in the graph (DDP needs every rank's backward)
    assert model.frame_text_loss([video.clone().requires_grad_()], [None]).item() == 0.0  # a record without timed_text
    with pytest.raises(ValueError, match="frame_text_loss: 7 video tokens for 5 frames"):
        model.frame_text_loss([video[:7]], [words])

"""Step-folder checkpoints: roundtrip, RNG streams, atomicity under SIGKILL, pruning, strictness."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from timechat.checkpoint import (
    CheckpointError,
    CorruptCheckpointError,
    checkpoint_path,
    export_original_layout,
    latest_checkpoint,
    latest_valid_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_trainable_weights,
    prune_checkpoints,
    save_checkpoint,
    set_aside,
    verify_checkpoint,
)
from timechat.train.schedule import LinearWarmupCosineLRScheduler

REPO_ROOT = Path(__file__).resolve().parents[2]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(4, 4)  # frozen: never saved
        self.backbone.requires_grad_(False)
        self.proj = nn.Linear(4, 3)
        self.query_tokens = nn.Parameter(torch.randn(1, 2, 4))
        self.register_buffer("position_ids", torch.arange(5))

    def forward(self, x):
        return self.proj(self.backbone(x) + self.query_tokens.mean()).pow(2).mean()


def _train_state(seed=0):
    torch.manual_seed(seed)
    model = Tiny()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    sched = LinearWarmupCosineLRScheduler(opt, max_epoch=2, iters_per_epoch=10, init_lr=1e-3,
                                          min_lr=1e-4, warmup_lr=1e-5, warmup_steps=4)
    for i in range(3):
        sched.step(0, i)
        model(torch.randn(2, 4)).backward()
        opt.step()
        opt.zero_grad()
    return model, opt, sched


def _draw():
    return (random.random(), float(np.random.rand()), torch.rand(3).tolist())


def test_roundtrip_restores_tensors_optimizer_scheduler_rng(tmp_path):
    model, opt, sched = _train_state(0)
    scaler = torch.amp.GradScaler("cpu", init_scale=128.0)
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = save_checkpoint(
        tmp_path, 3, model=model, optimizer=opt, scheduler=sched, scaler=scaler, epoch=0,
        micro_step=3, data_state={"pos": [1, 2]}, extra={"loss": 0.5},
        config_text="run:\n  seed: 42\n", rank_state={"shard": 0},
    )
    expected_draws = _draw()
    assert path == checkpoint_path(tmp_path, 3) and path.name == "step_00000003"
    assert sorted(p.name for p in path.iterdir()) == sorted([
        "COMPLETE", "trainable.safetensors", "optimizer.pt", "scheduler.pt", "scaler.pt",
        "trainer_state.json", "rng_state_rank0.pt", "config.yaml",
    ])
    # only the trainable parameters, under state_dict names; no frozen weights, no buffers
    saved = load_file(str(path / "trainable.safetensors"))
    assert sorted(saved) == ["proj.bias", "proj.weight", "query_tokens"]
    assert (path / "config.yaml").read_text() == "run:\n  seed: 42\n"
    marker = json.loads((path / "COMPLETE").read_text())
    assert marker["step"] == 3 and "trainable.safetensors" in marker["files"]

    model2, opt2, sched2 = _train_state(99)  # different weights and optimizer moments
    scaler2 = torch.amp.GradScaler("cpu")
    _draw()  # move the RNGs elsewhere
    state = load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2, scaler=scaler2)
    assert _draw() == expected_draws  # RNG streams continue exactly
    for (n, a), (_, b) in zip(model.named_parameters(), model2.named_parameters()):
        if a.requires_grad:
            assert torch.equal(a, b), n
        else:
            assert not torch.equal(a, b), n  # frozen weights are not part of the checkpoint
    for s1, s2 in zip(opt.state.values(), opt2.state.values()):
        assert all(torch.equal(s1[k], s2[k]) for k in ("exp_avg", "exp_avg_sq", "step"))
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert sched2.state_dict() == sched.state_dict()
    assert scaler2.get_scale() == 128.0
    assert state["step"] == 3 and state["epoch"] == 0 and state["micro_step"] == 3
    assert state["data_state"] == {"pos": [1, 2]} and state["extra"] == {"loss": 0.5}
    assert state["rank_state"] == {"shard": 0} and state["world_size"] == 1


def test_strict_load_names_missing_and_unexpected_keys(tmp_path):
    model, _, _ = _train_state()
    path = save_checkpoint(tmp_path, 1, model=model)
    # a new trainable parameter the checkpoint does not have
    model2 = Tiny()
    model2.extra_head = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"missing trainable parameters: \['extra_head.bias', "
                                              r"'extra_head.weight'\]"):
        load_trainable_weights(path, model2)
    # a saved key that is frozen now / that does not exist
    model3 = Tiny()
    model3.query_tokens.requires_grad_(False)
    with pytest.raises(CheckpointError, match=r"frozen .*\['query_tokens'\]"):
        load_checkpoint(path, model=model3)
    model4 = Tiny()
    del model4.query_tokens
    with pytest.raises(CheckpointError, match=r"unexpected keys .*\['query_tokens'\]"):
        load_trainable_weights(path, model4)
    model5 = Tiny()
    model5.proj = nn.Linear(4, 5)
    with pytest.raises(CheckpointError, match=r"proj.weight: checkpoint \(3, 4\) vs model \(5, 4\)"):
        load_trainable_weights(path, model5)
    # inference: everything frozen, 'subset' accepts the file
    model6 = Tiny().requires_grad_(False)
    assert load_trainable_weights(path, model6, match="subset") == [
        "proj.bias", "proj.weight", "query_tokens"
    ]
    assert torch.equal(model6.query_tokens, model.query_tokens)


def test_incomplete_or_tampered_folder_is_refused(tmp_path):
    model, _, _ = _train_state()
    path = save_checkpoint(tmp_path, 5, model=model)
    (path / "trainable.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="trainable.safetensors is missing or has a different"):
        load_checkpoint(path, model=Tiny())
    (path / "COMPLETE").unlink()
    with pytest.raises(CheckpointError, match="no COMPLETE marker"):
        load_checkpoint(path)
    assert latest_checkpoint(tmp_path) is None


def test_keep_last_n_and_latest(tmp_path):
    model, _, _ = _train_state()
    for step in (10, 20, 30, 40):
        save_checkpoint(tmp_path, step, model=model, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [30, 40]
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 40)
    assert prune_checkpoints(tmp_path, 1) == [checkpoint_path(tmp_path, 30)]
    assert not checkpoint_path(tmp_path, 30).exists()
    # re-saving an existing step replaces it atomically
    with torch.no_grad():
        model.query_tokens.fill_(7.0)
    save_checkpoint(tmp_path, 40, model=model)
    assert torch.all(load_file(str(checkpoint_path(tmp_path, 40) / "trainable.safetensors"))[
        "query_tokens"] == 7.0)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000040"]


def test_tmp_leftovers_are_ignored_and_cleaned(tmp_path):
    model, _, _ = _train_state()
    save_checkpoint(tmp_path, 1, model=model)
    leftover = tmp_path / "checkpoints" / "step_00000002.tmp-12345"
    leftover.mkdir()
    (leftover / "COMPLETE").write_text("{}")  # even a marker inside a tmp folder does not count
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 1)
    assert leftover.exists()
    assert latest_checkpoint(tmp_path, clean_tmp=True) == checkpoint_path(tmp_path, 1)
    assert not leftover.exists()


def test_world_size_needs_barrier_and_json_fields(tmp_path):
    model, _, _ = _train_state()
    with pytest.raises(ValueError, match="barrier"):
        save_checkpoint(tmp_path, 1, model=model, world_size=2)
    with pytest.raises(TypeError, match="'extra' is not JSON"):
        save_checkpoint(tmp_path, 1, model=model, extra={"t": torch.ones(1)})
    with pytest.raises(CheckpointError, match="rng_state_rank1.pt not found"):
        load_checkpoint(save_checkpoint(tmp_path, 2, model=model), rank=1)


def test_export_original_layout(tmp_path):
    state = {"llama_proj.weight": torch.randn(3, 2), "query_tokens": torch.zeros(1, 2, 4)}
    out = export_original_layout(state, tmp_path / "ckpt" / "timechat.pth", extra={"epoch": 2})
    obj = torch.load(out, weights_only=True)
    assert set(obj) == {"model", "epoch"} and obj["epoch"] == 2
    assert torch.equal(obj["model"]["llama_proj.weight"], state["llama_proj.weight"])
    assert [p.name for p in out.parent.iterdir()] == ["timechat.pth"]
    with pytest.raises(TypeError, match=r"\['bad'\]"):
        export_original_layout({"bad": 1}, tmp_path / "x.pth")


# -- integrity (issue 12): a checksum per file, verified on load; resume steps back past a damaged newest --
def _corrupt(file: Path, how: str) -> None:
    """The three damages of the issue: a cut file, changed tensor bytes (same size), a broken header."""
    data = bytearray(file.read_bytes())
    if how == "truncated":
        file.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "tensor_bytes":
        data[-3] ^= 0xFF  # inside the last tensor's data: same size, still a valid file
        file.write_bytes(bytes(data))
    else:  # "header": the length prefix -> safetensors' "header too large"
        data[:8] = (2**40).to_bytes(8, "little")
        file.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncated", "tensor_bytes", "header"])
def test_resume_falls_back_past_a_corrupt_newest_checkpoint(tmp_path, how):
    model, opt, sched = _train_state(0)
    good = save_checkpoint(tmp_path, 1, model=model, optimizer=opt, scheduler=sched)
    bad = save_checkpoint(tmp_path, 2, model=model, optimizer=opt, scheduler=sched)
    file = bad / "trainable.safetensors"
    _corrupt(file, how)
    found, skipped = latest_valid_checkpoint(tmp_path)
    assert found == good and [folder for folder, _ in skipped] == [bad]
    assert str(file) in skipped[0][1], skipped  # why: names the file
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(file))):
        load_checkpoint(bad, model=Tiny(), optimizer=opt)
    # the evaluation loader of a step folder: a clear error naming the file, marker or not
    with pytest.raises(CorruptCheckpointError, match=re.escape(str(file))):
        load_trainable_weights(bad, Tiny().requires_grad_(False), match="subset")
    (bad / "COMPLETE").unlink()
    if how != "tensor_bytes":  # without a manifest only the structure can be checked
        with pytest.raises(CorruptCheckpointError, match=re.escape(str(file))):
            load_trainable_weights(bad, Tiny().requires_grad_(False), match="subset")
    moved = set_aside(good)
    assert moved.name.startswith("step_00000001.corrupt-") and latest_valid_checkpoint(tmp_path) == (None, [])


def test_checkpoints_without_checksums_still_load_with_the_size_and_header_checks(tmp_path):
    model, opt, sched = _train_state(0)
    path = save_checkpoint(tmp_path, 3, model=model, optimizer=opt, scheduler=sched)
    manifest = json.loads((path / "COMPLETE").read_text())
    assert manifest["format_version"] == 2 and set(manifest["sha256"]) == set(manifest["files"])
    del manifest["sha256"]
    manifest["format_version"] = 1
    (path / "COMPLETE").write_text(json.dumps(manifest))  # a checkpoint saved before checksums
    model2, opt2, sched2 = _train_state(5)
    assert load_checkpoint(path, model=model2, optimizer=opt2, scheduler=sched2)["step"] == 3
    assert torch.equal(model2.proj.weight, model.proj.weight)
    _corrupt(path / "trainable.safetensors", "header")
    with pytest.raises(CorruptCheckpointError, match=r"trainable.safetensors: corrupted safetensors header"):
        load_checkpoint(path, model=model2)
    (path / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(CorruptCheckpointError, match=r"optimizer.pt is missing or has a different size"):
        verify_checkpoint(path)


def test_a_step_folder_left_without_marker_by_a_killed_prune_is_removed_once(tmp_path, caplog):
    model, _, _ = _train_state()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model=model, keep_last=2)
    stale = checkpoint_path(tmp_path, 1)
    stale.mkdir()  # what a kill between pruning's marker removal and its rmtree leaves
    (stale / "trainable.safetensors").write_bytes(b"partial")
    newer = checkpoint_path(tmp_path, 9)
    newer.mkdir()  # not ours to delete: newer than every complete checkpoint
    with caplog.at_level(logging.WARNING, logger="timechat.checkpoint"):
        save_checkpoint(tmp_path, 4, model=model, keep_last=2)
    assert not stale.exists() and newer.exists()
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert str(stale) not in caplog.text
    stale.mkdir()
    assert latest_checkpoint(tmp_path, clean_tmp=True) == checkpoint_path(tmp_path, 4) and not stale.exists()


_KILL_CHILD = textwrap.dedent(
    """
    import sys, time
    import torch
    from torch import nn
    from timechat.checkpoint import save_checkpoint

    out, mode = sys.argv[1], sys.argv[2]
    model = nn.Module()
    model.w = nn.Parameter(torch.zeros(2_000_000))  # 8 MB of fp32
    opt = torch.optim.AdamW([model.w])
    model.w.grad = torch.ones_like(model.w)
    opt.step()

    class SlowScheduler:  # stands in for a slow filesystem: hangs after the weights are written
        def state_dict(self):
            time.sleep(60)
            return {}

    if mode == "slow":
        with torch.no_grad():
            model.w.fill_(1.0)
        save_checkpoint(out, 1, model=model, optimizer=opt)
        print("saved", flush=True)
        save_checkpoint(out, 2, model=model, optimizer=opt, scheduler=SlowScheduler())
    else:  # save in a loop until killed; every step's weights equal the step number
        step = 1
        while True:
            with torch.no_grad():
                model.w.fill_(float(step))
            save_checkpoint(out, step, model=model, optimizer=opt, keep_last=2)
            step += 1
    """
)


def _spawn(tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(_KILL_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "run"), mode], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(cond, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.01)


def test_sigkill_during_save_never_yields_an_incomplete_latest(tmp_path):
    proc = _spawn(tmp_path, "slow")
    root = tmp_path / "run" / "checkpoints"

    def staging_has_weights():
        return any((p / "trainable.safetensors").exists() for p in root.glob("step_00000002.tmp-*"))

    _wait_for(staging_has_weights, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(root.glob("step_00000002.tmp-*"))  # the interrupted save left its staging folder
    latest = latest_checkpoint(tmp_path / "run")
    assert latest == checkpoint_path(tmp_path / "run", 1)
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(2_000_000))
    load_checkpoint(latest, model=m, restore_rng=False)
    assert torch.all(m.w == 1.0)
    assert latest_checkpoint(tmp_path / "run", clean_tmp=True) == latest
    assert not list(root.glob("*.tmp-*"))


def test_sigkill_at_random_moments_of_a_save_loop(tmp_path):
    rng = random.Random(0)
    proc = _spawn(tmp_path, "loop")
    run = tmp_path / "run"
    _wait_for(lambda: latest_checkpoint(run) is not None, proc)
    time.sleep(rng.uniform(0.2, 0.6))  # several saves of ~16 MB each, killed somewhere inside one
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = latest_checkpoint(run)
    step = int(latest.name.split("_")[1])
    assert step >= 1
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(2_000_000))
    state = load_checkpoint(latest, model=m, restore_rng=False)
    assert state["step"] == step and torch.all(m.w == float(step))
    # at most keep_last=2 complete folders (+1 if killed between commit and prune)
    assert 1 <= len(list_checkpoints(run)) <= 3

"""Distributed helpers: single-process no-ops and a real 2-process gloo run under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from timechat import distributed as D
from timechat.checkpoint import latest_checkpoint, load_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_read_launcher_env():
    assert D.read_launcher_env({}) == (0, 1, 0, "none")
    env = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
           "SLURM_NTASKS": "2"}
    assert D.read_launcher_env(env) == (3, 8, 1, "torchrun")  # torchrun wins inside SLURM
    assert D.read_launcher_env({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}) \
        == (5, 8, 1, "slurm")
    assert D.read_launcher_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == (0, 1, 0, "none")
    with pytest.raises(ValueError, match="RANK='x'"):
        D.read_launcher_env({"RANK": "x", "WORLD_SIZE": "2"})


def test_single_process_is_a_noop(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        monkeypatch.delenv(k, raising=False)
    info = D.init_distributed()
    assert (info.rank, info.world_size, info.local_rank, info.backend) == (0, 1, 0, None)
    assert not info.distributed and info.is_main
    assert not torch.distributed.is_initialized()
    t = torch.tensor([1, 2])
    out = D.all_reduce_mean(t)
    assert out.dtype == torch.float32 and out.tolist() == [1.0, 2.0] and out is not t
    assert D.broadcast_object({"a": 1}) == {"a": 1}
    D.barrier()
    D.cleanup()
    assert (D.get_rank(), D.get_world_size()) == (0, 1)


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from torch import nn
    from timechat import distributed as D
    from timechat.checkpoint import save_checkpoint

    out = sys.argv[1]
    info = D.init_distributed()
    r = info.rank
    mean = D.all_reduce_mean(torch.tensor([r + 1.0, 10.0 * r]))
    obj = D.broadcast_object({"from": r, "seed": 42} if r == 0 else None)
    from torch.nn.parallel import DistributedDataParallel as DDP
    from timechat.train.optim import build_optimizer, clip_grad_norm

    torch.manual_seed(0)  # same initial weights on both ranks (DDP also broadcasts rank 0's)
    model = DDP(nn.Linear(2, 2))
    opt, _ = build_optimizer(model, lr=0.1)
    x = torch.full((1, 2), float(r + 1))  # different data per rank
    model(x).sum().backward()
    norm = clip_grad_norm(model, 1.0)  # DDP averaged the gradients: same norm everywhere
    opt.step()
    torch.manual_seed(100 + r)
    save_checkpoint(out, 4, model=model, optimizer=opt, rank=r, world_size=info.world_size,
                    barrier=D.barrier, rank_state={"rank": r}, data_state={"k": 1})
    after_save = torch.rand(2).tolist()
    with open(os.path.join(out, f"result{r}.json"), "w") as f:
        json.dump({"rank": r, "world": info.world_size, "backend": info.backend,
                   "device": str(info.device), "main": info.is_main, "mean": mean.tolist(),
                   "obj": obj, "after_save": after_save, "norm": norm.item(),
                   "weight": model.module.weight.tolist()}, f)
    D.barrier()
    D.cleanup()
    """
)


@pytest.mark.slow  # torchrun with 2 gloo processes (~13 s); CI runs it
def test_torchrun_two_processes_gloo(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in range(2)]
    for r, x in enumerate(res):
        assert (x["rank"], x["world"], x["backend"], x["device"]) == (r, 2, "gloo", "cpu")
        assert x["main"] == (r == 0)
        assert x["mean"] == [1.5, 5.0]  # mean of [1, 0] and [2, 10]
        assert x["obj"] == {"from": 0, "seed": 42}
    # the checkpoint written cooperatively: shared files once, one RNG file per rank
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_00000004"
    names = sorted(p.name for p in ckpt.iterdir())
    assert names == ["COMPLETE", "optimizer.pt", "rng_state_rank0.pt", "rng_state_rank1.pt",
                     "trainable.safetensors", "trainer_state.json"]
    # grads averaged over ranks: d(sum(Wx+b))/dW = mean of x over ranks = 1.5 per entry
    expected_norm = (4 * 1.5**2 + 2 * 1.0**2) ** 0.5
    assert res[0]["norm"] == pytest.approx(expected_norm) and res[1]["norm"] == res[0]["norm"]
    assert res[0]["weight"] == res[1]["weight"]
    model = torch.nn.Linear(2, 2)
    load_checkpoint(ckpt, model=model, rank=0)  # names saved without DDP's `module.` prefix
    assert model.weight.tolist() == res[0]["weight"]
    assert not list((tmp_path / "checkpoints").glob("*.tmp-*"))
    for r in range(2):
        state = load_checkpoint(ckpt, rank=r)  # restores rank r's RNG
        assert state["rank_state"] == {"rank": r} and state["world_size"] == 2
        assert torch.rand(2).tolist() == res[r]["after_save"]

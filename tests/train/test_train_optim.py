"""Optimizer groups (original's rule), clipping and accumulation loss scaling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from timechat.train.optim import (
    build_optimizer,
    build_param_groups,
    clip_grad_norm,
    is_accumulation_boundary,
    scale_loss_for_accumulation,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 3)  # weight decays, bias not
        self.ln_vision = nn.LayerNorm(4)  # 'ln' in the name: both tensors no-decay
        self.query_tokens = nn.Parameter(torch.zeros(1, 2, 4))  # ndim 3: decay
        self.bn_scale = nn.Parameter(torch.ones(2, 2))  # 'bn' in the name: no-decay
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.proj(self.ln_vision(x) + self.query_tokens.sum()).sum() + self.bn_scale.sum()


def test_param_groups_follow_the_original_rule():
    groups, report = build_param_groups(Tiny(), 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert report["decay"]["names"] == ["query_tokens", "proj.weight"]
    assert report["no_decay"]["names"] == [
        "bn_scale", "proj.bias", "ln_vision.weight", "ln_vision.bias"
    ]
    assert report["decay"]["tensors"] == 2 and report["decay"]["numel"] == 12 + 8
    assert report["no_decay"]["numel"] == 3 + 4 + 4 + 4
    assert report["frozen"] == {"tensors": 2, "numel": 20}


def test_build_optimizer_settings_and_ddp_style_names():
    model = Tiny()
    opt, report = build_optimizer(model, lr=3e-5, weight_decay=0.05, betas=(0.9, 0.98))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["group_name"] for g in opt.param_groups] == ["decay", "no_decay"]
    assert opt.param_groups[0]["betas"] == (0.9, 0.98) and opt.param_groups[0]["eps"] == 1e-8
    assert opt.param_groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == 6
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        build_optimizer(frozen, lr=1.0)


def test_clip_grad_norm_measures_and_clips():
    model = Tiny()
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.full_like(p, 1.0)
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)  # 35 ones
    norm = clip_grad_norm(model, None)
    assert norm.item() == pytest.approx(n**0.5)
    assert model.proj.weight.grad[0, 0].item() == 1.0  # untouched
    norm = clip_grad_norm(model, 1.0)
    assert norm.item() == pytest.approx(n**0.5)
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters() if p.grad is not None))
    assert total.item() == pytest.approx(1.0, rel=1e-5)
    assert model.frozen.weight.grad is None


def test_clip_grad_norm_unscales_with_enabled_scaler():
    p = nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=1.0)

    class FakeScaler:
        def is_enabled(self):
            return True

        def unscale_(self, optimizer):
            assert optimizer is opt
            p.grad /= 4.0

    p.grad = torch.tensor([4.0, 0.0, 0.0])
    assert clip_grad_norm([p], None, scaler=FakeScaler(), optimizer=opt).item() == 1.0
    with pytest.raises(ValueError, match="optimizer"):
        clip_grad_norm([p], 1.0, scaler=FakeScaler())


def test_accumulation_scaling_normalized_vs_original():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3))
    xs = [torch.randn(3) for _ in range(4)]

    def accumulated_grad(normalize):
        w.grad = None
        for x in xs:
            scale_loss_for_accumulation((w * x).sum(), 4, normalize).backward()
        return w.grad.clone()

    mean_grad = torch.stack(xs).mean(0)
    torch.testing.assert_close(accumulated_grad(True), mean_grad)
    torch.testing.assert_close(accumulated_grad(False), mean_grad * 4)  # original: summed
    with pytest.raises(ValueError, match="accum_steps"):
        scale_loss_for_accumulation(torch.ones(()), 0)
    assert [is_accumulation_boundary(i, 4) for i in range(8)] == [False, False, False, True] * 2

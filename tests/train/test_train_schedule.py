"""LR schedules: hand-computed values of the original's main run (spec section 4.4) and state."""

from __future__ import annotations

import math

import pytest
import torch

from timechat import registry
from timechat.train.schedule import (
    ConstantLRScheduler,
    LinearWarmupCosineLRScheduler,
    LinearWarmupStepLRScheduler,
    constant_lr_at,
    lr_at,
    step_lr_at,
)

# stage2_finetune_time104k_valley72k.yaml
MAIN = dict(init_lr=3e-5, min_lr=1e-5, warmup_lr=1e-6, warmup_steps=13200, iters_per_epoch=22000,
            max_epoch=3)


def test_main_run_hand_values():
    assert lr_at(0, 0, **MAIN) == pytest.approx(1e-6, rel=1e-12)
    # halfway through warmup: 1e-6 + (3e-5 - 1e-6) * 6600 / 13200
    assert lr_at(0, 6600, **MAIN) == pytest.approx(1.55e-5, rel=1e-12)
    # last warmup step
    assert lr_at(0, 13199, **MAIN) == pytest.approx(1e-6 + 2.9e-5 * 13199 / 13200, rel=1e-12)
    # end of warmup: cosine measured from t=0 -> 1e-5 + 1e-5 * (1 + cos(pi/5)), an abrupt drop
    cos36 = (1 + math.sqrt(5)) / 4
    assert lr_at(0, 13200, **MAIN) == pytest.approx(1e-5 + 1e-5 * (1 + cos36), rel=1e-12)
    assert lr_at(0, 13200, **MAIN) == pytest.approx(2.80901699e-5, rel=1e-8)
    # t = 33000 is the cosine midpoint; (epoch 1, step 11000)
    assert lr_at(1, 11000, **MAIN) == pytest.approx(2e-5, rel=1e-12)
    # t = 66000 (end of epoch 2, one past the last real iteration) -> min_lr
    assert lr_at(3, 0, **MAIN) == pytest.approx(1e-5, rel=1e-12)
    assert lr_at(2, 21999, **MAIN) == pytest.approx(
        1e-5 + 1e-5 * (1 + math.cos(math.pi * 65999 / 66000)), rel=1e-12
    )


def test_warmup_uses_in_epoch_step_quirk():
    # warmup longer than an epoch: at the start of epoch 1 the LR falls back to warmup_lr
    cfg = dict(MAIN, iters_per_epoch=10000)
    assert lr_at(0, 9999, **cfg) == pytest.approx(1e-6 + 2.9e-5 * 9999 / 13200, rel=1e-12)
    assert lr_at(1, 0, **cfg) == pytest.approx(1e-6, rel=1e-12)
    assert lr_at(1, 3199, **cfg) == pytest.approx(1e-6 + 2.9e-5 * 3199 / 13200, rel=1e-12)
    # t = 13200 leaves warmup; the cosine spans 3 * 10000 steps
    assert lr_at(1, 3200, **cfg) == pytest.approx(
        1e-5 + 1e-5 * (1 + math.cos(math.pi * 13200 / 30000)), rel=1e-12
    )


def test_negative_warmup_lr_means_init_lr_and_zero_warmup():
    cfg = dict(MAIN, warmup_lr=-1)
    assert lr_at(0, 0, **cfg) == pytest.approx(3e-5)  # min(init, init + 0)
    cfg = dict(MAIN, warmup_steps=0)
    assert lr_at(0, 0, **cfg) == pytest.approx(3e-5)  # cosine at t=0


def test_step_schedule_values():
    kw = dict(init_lr=1e-4, min_lr=1e-6, decay_rate=0.5, warmup_lr=1e-5, warmup_steps=100)
    assert step_lr_at(0, 0, **kw) == pytest.approx(1e-5)
    assert step_lr_at(0, 50, **kw) == pytest.approx(1e-5 + 9e-5 * 0.5)
    assert step_lr_at(0, 500, **kw) == pytest.approx(1e-4)  # capped at init_lr after warmup
    assert step_lr_at(1, 0, **kw) == pytest.approx(5e-5)
    assert step_lr_at(3, 7, **kw) == pytest.approx(1.25e-5)
    assert step_lr_at(20, 0, **kw) == pytest.approx(1e-6)  # floored at min_lr
    # default decay_rate = 1: constant after epoch 0
    assert step_lr_at(5, 0, init_lr=1e-4, min_lr=0.0) == pytest.approx(1e-4)


def test_constant_schedule_values():
    assert constant_lr_at(4, 17, init_lr=2e-5) == 2e-5
    kw = dict(init_lr=2e-5, iters_per_epoch=10, warmup_lr=0.0, warmup_steps=20)
    assert constant_lr_at(1, 0, **kw) == pytest.approx(1e-5)  # global t = 10 (no quirk)
    assert constant_lr_at(2, 0, **kw) == pytest.approx(2e-5)


def _opt():
    p = torch.nn.Parameter(torch.zeros(2, 2))
    q = torch.nn.Parameter(torch.zeros(2))
    return torch.optim.AdamW([{"params": [p]}, {"params": [q], "weight_decay": 0.0}], lr=1.0)


def test_stateful_scheduler_sets_all_groups_and_roundtrips():
    opt = _opt()
    sched = registry.build("lr_schedule", "linear_warmup_cosine_lr", optimizer=opt, **MAIN)
    assert isinstance(sched, LinearWarmupCosineLRScheduler)
    lr = sched.step(0, 6600)
    assert lr == pytest.approx(1.55e-5)
    assert [g["lr"] for g in opt.param_groups] == [lr, lr]
    state = sched.state_dict()

    opt2 = _opt()
    sched2 = LinearWarmupCosineLRScheduler(opt2, **MAIN)
    sched2.load_state_dict(state)
    assert (sched2.cur_epoch, sched2.cur_step, sched2.last_lr) == (0, 6600, lr)
    assert [g["lr"] for g in opt2.param_groups] == [lr, lr]
    assert sched2.step(1, 5) == sched.step(1, 5)


def test_load_state_dict_strict_names_the_changed_hparam():
    sched = LinearWarmupCosineLRScheduler(None, **MAIN)
    sched.step(0, 10)
    other = LinearWarmupCosineLRScheduler(None, **dict(MAIN, max_epoch=4))
    with pytest.raises(ValueError, match="max_epoch: saved 3, current 4"):
        other.load_state_dict(sched.state_dict())
    other.load_state_dict(sched.state_dict(), strict=False)  # current config wins
    assert other.last_lr == pytest.approx(lr_at(0, 10, **dict(MAIN, max_epoch=4)))
    with pytest.raises(ValueError, match="name"):
        LinearWarmupStepLRScheduler(None, init_lr=3e-5, min_lr=1e-5).load_state_dict(
            sched.state_dict()
        )


def test_registry_names_and_typo_is_type_error():
    assert set(registry.LR_SCHEDULES) == {"linear_warmup_cosine_lr", "linear_warmup_step_lr", "constant_lr"}
    for name in registry.LR_SCHEDULES:
        assert registry.lookup("lr_schedule", name).name == name
    assert registry.lookup("lr_schedule", "constant_lr") is ConstantLRScheduler
    with pytest.raises(TypeError, match="warmup_step"):
        registry.build("lr_schedule", "linear_warmup_cosine_lr", optimizer=None, **MAIN, warmup_step=3)


@pytest.mark.parametrize("cls, unused", [
    (ConstantLRScheduler, {"max_epoch": 3}),
    (ConstantLRScheduler, {"min_lr": 1e-5}),
    (LinearWarmupStepLRScheduler, {"max_epoch": 3}),
    (LinearWarmupStepLRScheduler, {"iters_per_epoch": 10}),
])
def test_schedules_reject_keys_they_do_not_use(cls, unused):
    own = {k: MAIN.get(k, 1.0) for k in cls.hparam_names}
    cls(None, **own)  # exactly its own keys: fine
    with pytest.raises(TypeError, match=next(iter(unused))):
        cls(None, **own, **unused)


def test_hparam_names_are_the_keyword_arguments_and_the_saved_state():
    import inspect

    for name in registry.LR_SCHEDULES:
        cls = registry.lookup("lr_schedule", name)
        params = [p for p in inspect.signature(cls).parameters if p != "optimizer"]
        assert sorted(params) == sorted(cls.hparam_names), name
        own = {k: MAIN.get(k, 1.0) for k in cls.hparam_names}
        assert list(cls(None, **own).state_dict()["hparams"]) == list(cls.hparam_names)

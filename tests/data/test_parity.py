"""The data parity rows pass on the public fixtures (one tool run per fixture, see conftest)."""

from __future__ import annotations

import torch

from timechat.reference.compare import compare_mean_abs, format_rows


def test_reference_data_parity(reference_data_parity):
    run = reference_data_parity
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert len(run.rows) > 100 and not run.failed(), format_rows(run.failed())
    assert all(r.name.startswith("data/") for r in run.rows)


def test_model_fixture_data_parity(reference_model_parity):
    rows = [r for r in reference_model_parity.rows if r.name.startswith("data/")]
    bad = [r for r in rows if not r.ok]
    assert len(rows) > 30 and not bad, format_rows(bad)
    # The PyAV fallback is a real check (a bound on the mean difference), not a row that always passes.
    fallback = next(r for r in rows if r.name.endswith("/frames/pyav_resized_fallback"))
    assert fallback.tol.startswith("mean<=")


def test_mean_bound_rows_can_fail():
    want = torch.zeros(2, 4, 4, 3)
    edge = want.clone()
    edge[:, 0, 0, 0] = 41  # one large difference per frame: the mean stays small (0.85)
    assert compare_mean_abs("edge", edge, want, max_mean=2.0).ok
    assert not compare_mean_abs("shifted", want + 3, want, max_mean=2.0).ok
    assert not compare_mean_abs("shape", want[:1], want, max_mean=2.0).ok

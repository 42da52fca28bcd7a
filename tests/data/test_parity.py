"""Both data parity checks pass on the public fixtures."""

from __future__ import annotations

from timechat.reference.data import check_model_fixture_data, check_reference_data
from timechat.reference.compare import format_rows


def test_reference_data_parity(reference_data_dir):
    rows = check_reference_data(reference_data_dir)
    bad = [r for r in rows if not r.ok]
    assert len(rows) > 100 and not bad, format_rows(bad)


def test_model_fixture_data_parity(reference_model_dir):
    rows = check_model_fixture_data(reference_model_dir)
    bad = [r for r in rows if not r.ok]
    assert len(rows) > 30 and not bad, format_rows(bad)

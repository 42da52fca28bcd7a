"""scripts/check_reference_parity.py: fixture kinds, failing rows and unsupported kinds.

The full public fixtures are checked once per session (conftest: `reference_model_parity`,
`reference_data_parity`; the metric cases in tests/metrics). Here small fixtures built in
tmp_path exercise the tool's own logic.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_reference_parity.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("check_reference_parity_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fixture_kind_from_the_folder_files(tool, tmp_path):
    for kind, files in {
        "reference_model": {"manifest.json": {"model": {}, "tensors": {}}},
        "reference_data": {"manifest.json": {"samples": [], "batches": []}},
        "reference_benchmarks": {"manifest.json": {"benchmarks": {}, "inputs": {}}},
        "reference_metrics": {"expected.json": {"cases": {}}},
    }.items():
        folder = tmp_path / kind
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_text(json.dumps(content))
        assert tool.fixture_kind(folder) == kind
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        tool.fixture_kind(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="neither"):
        tool.fixture_kind(tmp_path)


@pytest.mark.slow  # a subprocess of the tool (~10 s); CI runs it
def test_benchmarks_kind_without_tokenizers_cannot_be_checked(parity_tool, tmp_path):
    """The kind is checked now (tests/test_reference_benchmarks.py); a manifest it cannot read is exit 2."""
    fixture = tmp_path / "reference_benchmarks"
    fixture.mkdir()
    (fixture / "manifest.json").write_text(json.dumps({"benchmarks": {}}))
    run = parity_tool(fixture, tmp_path)
    assert run.returncode == 2 and run.rows == [] and "passed" not in run.stdout
    assert "tokenizers" in run.stderr


def test_metrics_kind_rows_and_exit_code(parity_tool, reference_metrics_dir, tmp_path):
    """A small metrics fixture (three public cases, one raw value tampered): one row per case, exit 1."""
    expected = json.loads((reference_metrics_dir / "expected.json").read_text())
    by_size = sorted(expected["cases"].items(), key=lambda nc: (reference_metrics_dir / nc[1]["pred"]).stat().st_size)
    picks = [("tvg", "ok"), ("tvg", "crash"), ("vhd", "ok")]  # the smallest case of each
    cases = dict(next((n, c) for n, c in by_size if (c["task"], c["status"]) == pick) for pick in picks)
    fixture = tmp_path / "metrics"
    for case in cases.values():
        for key in ("gt", "pred"):
            (fixture / case[key]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(reference_metrics_dir / case[key], fixture / case[key])
    tampered = next(n for n, c in cases.items() if c["status"] == "ok" and c["task"] == "tvg")
    cases[tampered]["raw"]["R1@0.3"] += 0.01
    (fixture / "expected.json").write_text(json.dumps({**expected, "cases": cases}))

    run = parity_tool(fixture, tmp_path)
    assert run.returncode == 1, run.stderr[-2000:]
    assert [r.name for r in run.rows] == [f"metrics/{n}" for n in cases]
    assert [r.name for r in run.failed()] == [f"metrics/{tampered}"]
    assert f"{len(cases) - 1} passed, 1 failed" in run.stdout

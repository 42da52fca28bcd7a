"""The parity tool on the QA-benchmark goldens (`reference_benchmarks`): the public set passes, a
copied set with one tampered value fails on exactly that row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, _require


@pytest.fixture(scope="module")
def reference_benchmarks_dir() -> Path:
    return _require(FIXTURES / "reference_benchmarks")


@pytest.fixture(scope="module")
def public_run(parity_tool, reference_benchmarks_dir, tmp_path_factory):
    return parity_tool(reference_benchmarks_dir, tmp_path_factory.mktemp("parity_reference_benchmarks"))


def test_public_fixture_passes(public_run, reference_benchmarks_dir):
    assert public_run.returncode == 0, public_run.stdout[-3000:] + public_run.stderr[-2000:]
    assert public_run.rows and not public_run.failed()
    manifest = json.loads((reference_benchmarks_dir / "manifest.json").read_text())
    names = [r.name for r in public_run.rows]
    for bench, spec in manifest["benchmarks"].items():
        for case in spec["cases"]:  # every case is compared, down to its pixels and context ids
            for quantity in ("sampling/indices", "pixels/frame_u8_sha256", "prompt/context_ids", "chat_answer_text"):
                assert f"bench/{bench}/{case['id']}/{quantity}" in names
        for rel in spec.get("outputs") or []:
            assert f"bench/{bench}/outputs/{Path(rel).name}" in names
    assert sum(1 for n in names if n.startswith("bench/extraction/")) >= sum(
        len(json.loads((reference_benchmarks_dir / rel).read_text())["rows"]) for rel in manifest["extraction"].values())
    assert sum(1 for n in names if "/pixels/dump_" in n) >= len(manifest["pixels"]["entries"])


def _small_copy(src: Path, dst: Path) -> tuple[dict, str]:
    """A copy of the fixture with one benchmark (the one with fewest cases): (manifest, benchmark)."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    bench = min(manifest["benchmarks"], key=lambda b: len(manifest["benchmarks"][b]["cases"]))
    manifest["benchmarks"] = {bench: manifest["benchmarks"][bench]}
    manifest["extraction"] = {bench: manifest["extraction"][bench]} if bench in manifest.get("extraction", {}) else {}
    cases = {c["id"] for c in manifest["benchmarks"][bench]["cases"]}
    manifest["pixels"]["entries"] = [e for e in manifest["pixels"]["entries"] if e["sample"] in cases]
    for key in ("llama", "bert"):  # the manifest names them relative to the original folder
        manifest["tokenizers"][key] = str((src / manifest["tokenizers"][key]).resolve())
    return manifest, bench


@pytest.mark.slow  # a second full run of the benchmarks fixture (~14 s); CI runs it
def test_tampered_copy_fails_on_that_row(parity_tool, reference_benchmarks_dir, tmp_path):
    manifest, bench = _small_copy(reference_benchmarks_dir, tmp_path / "fixture")
    case = manifest["benchmarks"][bench]["cases"][0]
    expected = tmp_path / "fixture" / case["expected"]
    exp = json.loads(expected.read_text())
    exp["sampling"]["indices"][-1] += 1  # one recorded frame index
    expected.write_text(json.dumps(exp))
    (tmp_path / "fixture" / "manifest.json").write_text(json.dumps(manifest))

    run = parity_tool(tmp_path / "fixture", tmp_path)
    assert run.returncode == 1, run.stderr[-2000:]
    assert [r.name for r in run.failed()] == [f"bench/{bench}/{case['id']}/sampling/indices"]
    assert len(run.rows) > 50

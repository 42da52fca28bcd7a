"""Shared test configuration: offline mode, fixture locations, determinism."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TIMECHAT_SHARED", REPO_ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"reference fixtures not found at {path} (set TIMECHAT_SHARED)")
    return path


@pytest.fixture(scope="session")
def reference_model_dir() -> Path:
    return _require(FIXTURES / "reference_model")


@pytest.fixture(scope="session")
def reference_data_dir() -> Path:
    return _require(FIXTURES / "reference_data")


@pytest.fixture(scope="session")
def reference_metrics_dir() -> Path:
    return _require(FIXTURES / "reference_metrics")


@pytest.fixture(scope="session")
def tokenizers_dir() -> Path:
    return _require(FIXTURES / "tokenizers")


# -- the reference-parity tool, run once per fixture ---------------------------------------------
@dataclass
class ParityRun:
    """One run of `scripts/check_reference_parity.py` on a fixture folder."""

    fixture_dir: Path  # the folder that was checked
    returncode: int
    stdout: str
    stderr: str
    rows: list  # the `ParityRow`s the tool wrote with --json

    def failed(self) -> list:
        return [r for r in self.rows if not r.ok]


def run_parity_tool(fixture_dir: Path, workdir: Path, timeout: int = 1200) -> ParityRun:
    """Run the parity tool as a user does (a subprocess) and read back its rows."""
    from timechat.reference.compare import ParityRow

    out = workdir / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "check_reference_parity.py"), str(fixture_dir), "--json", str(out)],
        capture_output=True, text=True, timeout=timeout,
    )
    rows = [ParityRow(**r) for r in json.loads(out.read_text())] if out.is_file() else []
    return ParityRun(fixture_dir, proc.returncode, proc.stdout, proc.stderr, rows)


def _parity_on_a_copy(src: Path, tmp_path_factory: pytest.TempPathFactory) -> ParityRun:
    work = tmp_path_factory.mktemp(f"parity_{src.name}")
    copy = work / "fixture"
    shutil.copytree(src, copy)
    return run_parity_tool(copy, work)


@pytest.fixture(scope="session")
def reference_model_parity(reference_model_dir, tmp_path_factory) -> ParityRun:
    """The tool on (a copy of) reference_model: the model and data rows that several tests assert on."""
    return _parity_on_a_copy(reference_model_dir, tmp_path_factory)


@pytest.fixture(scope="session")
def reference_data_parity(reference_data_dir, tmp_path_factory) -> ParityRun:
    """The tool on reference_data, in place: its manifest names the tokenizers as ../tokenizers/."""
    return run_parity_tool(reference_data_dir, tmp_path_factory.mktemp("parity_reference_data"))


@pytest.fixture(scope="session")
def parity_tool():
    """`run_parity_tool(fixture_dir, workdir)`, for tests that build their own small fixtures."""
    return run_parity_tool


@pytest.fixture(scope="session")
def synthetic_test_split(tmp_path_factory) -> Path:
    """A data root with the synthetic test split (3 short 32-px videos) under `synthetic/`; read-only."""
    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic_test_split")
    generate_synthetic_dataset(root / "synthetic", num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0),
                               fps=4.0, size=32, max_events=2, min_event_duration=2.0)
    return root

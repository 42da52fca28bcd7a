"""Shared test configuration: offline mode, fixture locations, determinism."""

from __future__ import annotations

import os
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

"""Shared fixtures: tiny random-weight models saved to disk (loaded by path like real ones) and small corpora."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["llm_fixtures", "crosscode_fixture"]

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("AUTOINTERP_PROGRESS", "0")

from tiny_models import FAMILIES, SAMPLE_TEXT, make_tiny_model  # noqa: E402


@pytest.fixture
def one_thread():
    """Tiny matmuls: extra OpenMP threads only add sync overhead (and spin on a busy 2-core box)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: make_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def text_corpus(tmp_path_factory) -> Path:
    """A directory of .txt documents built from the tiny tokenizers' training text (varied lengths)."""
    root = tmp_path_factory.mktemp("corpus")
    sentences = [s.strip() + "." for s in SAMPLE_TEXT.replace("\n", " ").split(".") if s.strip()]
    for i in range(12):
        body = " ".join(sentences[(i + j) % len(sentences)] for j in range(3 + 4 * (i % 4)))
        (root / f"doc{i:02d}.txt").write_text(body, encoding="utf-8")
    return root

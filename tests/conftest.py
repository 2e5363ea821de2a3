"""Shared fixtures: tiny random-weight models saved to disk (loaded by path like real ones) and small corpora.

Layout: tests mirror the package. A test of ``autointerp/<package>/`` (``sae/pretrained`` included) lives in
``tests/<package>/``; a test of a top-level module (cli, config, ...), of the package as a whole (architecture,
docs, GPU, cost, damaged artifacts), of the test helpers themselves, or of a script outside the package
(``benchmarks/``) stays at the top of ``tests/``. What tests share lives in ``tests/helpers/`` (a package: run
builders in ``helpers/runs.py``, tiny models, pretrained-SAE writers, the CLI subprocess, fixture plugins) and is
imported as ``helpers.<module>`` (pyproject.toml puts ``tests/`` on sys.path). Test directories have no
``__init__.py``, so every test file's basename is unique. No test module imports another test module.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["helpers.llm_fixtures", "helpers.crosscode_fixture"]

os.environ.setdefault("AUTOINTERP_PROGRESS", "0")

from helpers.tiny_models import FAMILIES, SAMPLE_TEXT, make_tiny_model  # noqa: E402  (after AUTOINTERP_PROGRESS)


def pytest_collection_finish(session):
    """Start building the peer venvs the collected tests need, in the background (``helpers.peer_envs``)."""
    from helpers import peer_envs

    if not session.config.option.collectonly:
        peer_envs.start(peer_envs.needed(session.items))


def pytest_sessionfinish(session):
    from helpers import peer_envs

    peer_envs.stop()


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

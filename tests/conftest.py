"""Shared fixtures: every test gets its own lake under tmp_path; nothing touches ./lake."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from papersys.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lake"
    monkeypatch.setenv("PAPERSYS_LAKE_ROOT", str(root))
    monkeypatch.delenv("PAPERSYS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return root


@pytest.fixture
def config(lake_root: Path) -> Config:
    return load_config()


@pytest.fixture
def con(config: Config) -> Iterator:
    from papersys import lake

    connection = lake.connect(config)
    yield connection
    connection.close()

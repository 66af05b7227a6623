"""Shared fixtures: every test gets its own disk cache and a seeded random generator."""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """A fresh TRACEJIT_CACHE_DIR per test, so tests never see each other's (or the user's) cache."""
    monkeypatch.setenv("TRACEJIT_CACHE_DIR", str(tmp_path / "tracejit-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)

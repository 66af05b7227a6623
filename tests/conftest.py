"""Shared fixtures: every test gets its own disk cache; a seeded random generator; a logging compiler."""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """A fresh TRACEJIT_CACHE_DIR per test, so tests never see each other's (or the user's) cache."""
    monkeypatch.setenv("TRACEJIT_CACHE_DIR", str(tmp_path / "tracejit-cache"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def logging_cc(tmp_path, monkeypatch):
    """A compiler wrapper that logs each command line, then runs gcc (count builds with
    probes.builds_logged)."""
    log = tmp_path / "cc.log"
    script = tmp_path / "logcc"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec gcc "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("TRACEJIT_CC", str(script))
    return log

"""examples/train_mlp.py: the jitted training step follows the hand-written numpy one step by step,
training reaches the accuracy the README promises, and the script runs as a command."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE = EXAMPLES / "train_mlp.py"
ADAM = EXAMPLES / "train_mlp_adam.py"


def _load(path: Path, name: str):
    sys.path.insert(0, str(EXAMPLES))  # train_mlp_adam imports train_mlp, as it does run as a script
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.fixture(scope="module")
def example():
    return _load(EXAMPLE, "train_mlp_example")


@pytest.fixture(scope="module")
def adam():
    return _load(ADAM, "train_mlp_adam_example")


def test_jitted_loss_matches_hand_written_numpy_step_by_step(example):
    x_train, y_train, _, _, _ = example.load_data(seed=0)
    sizes = (x_train.shape[1], 32, 10)
    params_tj = params_np = example.init_params(sizes, seed=0)
    rng = np.random.default_rng(0)
    lr = 0.3
    for step, idx in zip(range(8), example.batches(len(x_train), 64, rng)):
        x, y = x_train[idx], y_train[idx]
        params_tj, loss_tj = example.train_step(params_tj, x, y, lr)
        params_np, loss_np = example.numpy_train_step(params_np, x, y, lr)
        assert loss_tj.dtype == np.float32 and loss_np.dtype == np.float32
        np.testing.assert_allclose(loss_tj, loss_np, rtol=1e-4, err_msg=f"loss at step {step}")
        for k in params_np:
            assert params_tj[k].dtype == np.float32
            np.testing.assert_allclose(params_tj[k], params_np[k], rtol=1e-4, atol=1e-5, err_msg=f"{k} at step {step}")


def test_training_reaches_95_percent_on_digits(example):
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test, _ = example.load_data(seed=0)
    params = example.init_params((x_train.shape[1], 64, 10), seed=0)
    params, losses = example.train(example.train_step, params, x_train, y_train, epochs=30, batch=64, lr=0.3, seed=0)
    assert losses[-1] < losses[0]
    assert example.accuracy(params, x_test, y_test) >= 0.95


def test_example_runs_as_a_script(tmp_path):
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "1", "--repeats", "20"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "test accuracy" in out and "numpy, hand-written backward" in out and "speed-up" in out


def test_synthetic_fallback_without_scikit_learn(example, monkeypatch):
    for module in ("sklearn", "sklearn.datasets"):
        monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    x_train, y_train, x_test, y_test, name = example.load_data(seed=0)
    assert "synthetic" in name and x_train.dtype == np.float32 and set(np.unique(y_train)) == set(range(10))
    params = example.init_params((x_train.shape[1], 32, 10), seed=0)
    params, _ = example.train(example.train_step, params, x_train, y_train, epochs=5, batch=64, lr=0.3, seed=0)
    assert example.accuracy(params, x_test, y_test) >= 0.9


# ---- examples/train_mlp_adam.py: a namedtuple optimizer state, keyword hyperparameters ----------------
def test_jitted_adam_follows_numpy_adam_step_by_step(adam):
    x_train, y_train, _, _, _ = adam.load_data(seed=0)
    params_tj = params_np = adam.init_params((x_train.shape[1], 32, 10), seed=0)
    state_tj = state_np = adam.adam_init(params_tj)
    rng = np.random.default_rng(0)
    for step, idx in zip(range(6), adam.batches(len(x_train), 64, rng)):
        x, y = x_train[idx], y_train[idx]
        params_tj, state_tj, loss_tj = adam.adam_step(params_tj, state_tj, x, y, lr=0.01)
        params_np, state_np, loss_np = adam.numpy_adam_step(params_np, state_np, x, y, lr=0.01)
        assert type(state_tj) is adam.AdamState and state_tj.step == step + 1
        np.testing.assert_allclose(loss_tj, loss_np, rtol=1e-4, err_msg=f"loss at step {step}")
        for k in params_np:
            assert params_tj[k].dtype == state_tj.m[k].dtype == state_tj.v[k].dtype == np.float32
            np.testing.assert_allclose(params_tj[k], params_np[k], rtol=1e-4, atol=1e-5, err_msg=f"{k}, step {step}")
            np.testing.assert_allclose(state_tj.v[k], state_np.v[k], rtol=1e-3, atol=1e-9, err_msg=f"v[{k}]")
    assert len(adam.adam_step._cache) == 1  # one signature: lr is a Python float, the state keeps its types


def test_adam_reaches_95_percent_on_digits(adam):
    pytest.importorskip("sklearn")
    x_train, y_train, x_test, y_test, _ = adam.load_data(seed=0)
    params = adam.init_params((x_train.shape[1], 64, 10), seed=0)
    params, _, losses = adam.train(adam.adam_step, params, x_train, y_train, epochs=10, batch=64, lr=0.01, seed=0)
    assert losses[-1] < losses[0]
    assert adam.accuracy(params, x_test, y_test) >= 0.95


def test_adam_example_runs_as_a_script(tmp_path):
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, str(ADAM), "--epochs", "1", "--repeats", "20"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "time per Adam step" in result.stdout

"""The `tracejit` command, run as a user runs it: a subprocess of `python -m tracejit` (and once the
installed `tracejit` script). Shape-spec parsing, colour choice and the bench locator are checked
in-process, where that is faster and just as real."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tracejit as tj
from tracejit.cli import bench_cmd, main, specs
from tracejit.cli.output import highlight, progress, want_color

MLP = '''\
import numpy as np
import tracejit as tj


def loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    m = logits.max(axis=1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
    return -logp[np.arange(x.shape[0]), y].mean()


@tj.jit
def predict(params, x):
    return np.tanh(x @ params["W1"] + params["b1"])


def example_args():
    rng = np.random.default_rng(0)
    params = {"W1": rng.normal(size=(20, 16)).astype(np.float32), "b1": np.zeros(16, np.float32),
              "W2": rng.normal(size=(16, 10)).astype(np.float32), "b2": np.zeros(10, np.float32)}
    return params, np.zeros((8, 20), np.float32), np.zeros(8, np.int64)
'''

# A script that checks its own results against numpy: exit status 0 proves that running under
# `tracejit dump` changed nothing about what the program computes.
SCRIPT = '''\
import sys
import numpy as np
import tracejit as tj


@tj.jit
def scale(x, a):
    return np.tanh(x * a) + 1.0


@tj.jit
def total(x):
    return (x * x).sum(axis=0)


x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
for got, want in ((scale(x, 2.0), np.tanh(x * 2.0) + 1.0), (total(x), (x * x).sum(axis=0))):
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6)
scale(x.astype(np.float64), 0.5)  # a second signature of scale
print("script args:", sys.argv[1:])
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
'''

MLP_SPECS = ["params={W1:f32[20,16],b1:f32[16],W2:f32[16,10],b2:f32[10]}", "x=f32[8,20]", "y=i64[8]"]


def run_cli(*args, cwd, env=None, command=None):
    command = command or [sys.executable, "-m", "tracejit"]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NO_COLOR", None)
    return subprocess.run([*command, *map(str, args)], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "mlp.py").write_text(MLP)
    (tmp_path / "script.py").write_text(SCRIPT)
    return tmp_path


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tracejit: error: "), result.stderr
    return lines[0]


def example_inputs():
    namespace = {}
    exec(MLP, namespace)
    return namespace["example_args"]()


def numpy_loss():
    namespace = {}
    exec(MLP, namespace)
    return np.asarray(namespace["loss"](*example_inputs()))


def type_text(array) -> str:
    return f"{ {'float32': 'f32', 'float64': 'f64'}[array.dtype.name] }[{','.join(map(str, array.shape))}]"


# ---- dump of one function ----------------------------------------------------------------------
def test_dump_function_all_sections(project):
    result = run_cli("dump", "mlp.py:loss", *MLP_SPECS, cwd=project)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in ("==== traced IR: loss", "==== optimized IR and kernels: loss", "==== C: loss"):
        assert title in out
    traced = out.split("==== traced IR: loss ====")[1].split("====")[0]
    # inputs named after the parameters, dict leaves flattened in sorted key order, numpy's dtypes
    assert "def loss(%params_W1:f32[20,16], %params_W2:f32[16,10], %params_b1:f32[16], %params_b2:f32[10], " \
           "%x:f32[8,20], %y:i64[8]):" in traced
    assert "= matmul %x, %params_W1" in traced and "# mlp.py:6" in traced
    # the returned value has the dtype and shape numpy's own run of the function gives
    *_, last, ret = traced.strip().splitlines()
    assert ret.strip() == f"return {last.split(':')[0].strip()}"
    assert last.split("=")[0].strip().endswith(":" + type_text(numpy_loss()))
    c_part = out.split("==== C: loss ====")[1]
    assert "tj_main" in c_part and "/* fused:" in c_part


def test_dump_function_format_ir_and_c(project):
    ir = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--format", "ir", cwd=project)
    assert ir.returncode == 0, ir.stderr
    assert "def loss(" in ir.stdout and "tanh" in ir.stdout and "==== C:" not in ir.stdout
    c = run_cli("dump", "mlp.py:loss", "--args-from", "example_args", "--format", "c", cwd=project)
    assert c.returncode == 0, c.stderr
    assert "def loss(" not in c.stdout and "====" not in c.stdout  # pure C, ready for `> loss.c`
    assert "tj_main" in c.stdout and "/* fused:" in c.stdout


def test_dump_jitted_function_with_args_from(project):
    result = run_cli("dump", "mlp.py:predict", "--arg", "params={W1:f32[4,3],b1:f32[3]}", "--arg", "x=f64[2,4]",
                     "--format", "ir", cwd=project)
    assert result.returncode == 0, result.stderr
    # f64 input and f32 weights promote to f64, as numpy does
    assert "%x:f64[2,4]" in result.stdout and "f64[2,3] = matmul" in result.stdout


def test_dump_format_py(project):
    result = run_cli("dump", "mlp.py:loss", "--args-from", "example_args", "--format", "py", cwd=project)
    assert result.returncode == 0, result.stderr
    namespace = {}
    exec(compile(result.stdout, "dumped.py", "exec"), namespace)  # it is real, runnable numpy code
    params, x, y = example_inputs()
    got = namespace["loss"](*(params[k] for k in sorted(params)), x, y)
    want = numpy_loss()
    assert np.asarray(got).dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dump_grad(project):
    result = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--grad", "params", "--format", "ir", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "value_and_grad(loss, argnums=0)" in result.stdout
    assert "ct_" in result.stdout  # the backward graph's values
    py = run_cli("dump", "mlp.py:loss", "--args-from", "example_args", "--grad", "--format", "py", cwd=project)
    assert py.returncode == 0, py.stderr
    namespace = {}
    exec(compile(py.stdout, "dumped.py", "exec"), namespace)
    params, x, y = example_inputs()
    value, *grads = namespace["value_and_grad_loss"](*(params[k] for k in sorted(params)), x, y)
    np.testing.assert_allclose(value, numpy_loss(), rtol=1e-6)
    for key, g in zip(sorted(params), grads):  # one gradient per leaf, with the leaf's shape and dtype
        assert g.shape == params[key].shape and g.dtype == params[key].dtype
    # d loss / d b2 of softmax cross-entropy: mean over the batch of softmax - one_hot(y)
    logits = np.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    want_b2 = (softmax - np.eye(10, dtype=np.float32)[y]).mean(0)
    np.testing.assert_allclose(grads[sorted(params).index("b2")], want_b2, rtol=1e-4, atol=1e-6)


def test_options_and_specs_in_any_order(project):
    reference = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--grad", "--format", "ir", cwd=project)
    assert reference.returncode == 0, reference.stderr
    for args in (["--grad", "mlp.py:loss", "--format", "ir", *MLP_SPECS],  # --grad must not eat the file
                 ["mlp.py:loss", "--format", "ir", "--grad", *MLP_SPECS]):  # ...nor the first spec
        result = run_cli("dump", *args, cwd=project)
        assert result.returncode == 0 and result.stdout == reference.stdout, (args, result.stderr)


def test_grad_of_unknown_argument(project):
    line = one_line_error(run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--grad", "parms", cwd=project))
    assert "'parms'" in line and "did you mean 'params'" in line


# ---- dump of a script ------------------------------------------------------------------------
def test_dump_script_shows_every_compiled_function(project):
    result = run_cli("dump", "script.py", "--format", "ir", "--", "--flag", "x", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "script args: ['--flag', 'x']" in result.stdout  # argv reaches the script unchanged
    assert "==== scale(x:f32[3,4], a:f64[])" in result.stdout
    assert "==== scale(x:f64[3,4], a:f64[])" in result.stdout
    assert "==== total(x:f32[3,4])" in result.stdout
    assert "def total(%x:f32[3,4]):" in result.stdout and "sum[axes=(0,)]" in result.stdout


def test_dump_script_format_py(project):
    result = run_cli("dump", "script.py", "--format", "py", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "def total(x):" in result.stdout and "np.tanh(" in result.stdout


def test_dump_script_exit_status_is_the_scripts(project):
    result = run_cli("dump", "script.py", "--format", "c", "--", "3", cwd=project)
    assert result.returncode == 3
    assert "==== total(" in result.stdout  # what compiled before the exit is still shown


def test_dump_script_out_dir(project):
    out = project / "dumps"
    result = run_cli("dump", "script.py", "--out", out, cwd=project)
    assert result.returncode == 0, result.stderr
    index = json.loads((out / "index.json").read_text())["functions"]
    assert sorted(e["name"] for e in index) == ["scale", "scale", "total"]
    for entry in index:
        folder = out / entry["folder"]
        assert {"traced.ir", "optimized.ir", "kernel.c", "meta.json"} <= {p.name for p in folder.iterdir()}
        assert (folder / "traced.ir").read_text().startswith(f"def {entry['name']}(")
        compile((folder / "function.py").read_text(), "function.py", "exec")
        assert entry["folder"] in (out / "index.md").read_text()
    assert str(out / "index.md") in result.stdout


def test_tracejit_dump_env_writes_the_same_layout(project):
    out = project / "envdump"
    result = subprocess.run([sys.executable, "script.py"], cwd=project, capture_output=True, text=True,
                            env={**os.environ, "TRACEJIT_DUMP": str(out)}, timeout=120)
    assert result.returncode == 0, result.stderr
    names = sorted(e["name"] for e in json.loads((out / "index.json").read_text())["functions"])
    assert names == ["scale", "scale", "total"]
    # a second run with the same signatures lands in the same folders
    subprocess.run([sys.executable, "script.py"], cwd=project, env={**os.environ, "TRACEJIT_DUMP": str(out)},
                   capture_output=True, timeout=120, check=True)
    assert len([p for p in out.iterdir() if p.is_dir()]) == 3


def test_dump_function_out_dir(project):
    out = project / "one"
    result = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--out", out, cwd=project)
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads((out / "index.json").read_text())["functions"]
    assert entry["name"] == "loss" and "x:f32[8,20]" in entry["signature"]
    assert "matmul" in (out / entry["folder"] / "optimized.ir").read_text()


# ---- bad command lines: exit 2, one line ------------------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["dump", "missing.py:loss", "x=f32[3]"], "no such file: missing.py"),
    (["dump", "missing.py"], "no such file: missing.py"),
    (["dump", "mlp.py:loss", "x=f33[3]"], "unknown dtype 'f33'"),
    (["dump", "mlp.py:loss", "x=f32[3,"], "bad shape spec 'x=f32[3,'"),
    (["dump", "mlp.py:loss", "x=f32[-3]"], "whole number"),
    (["dump", "mlp.py:loss", "params={W1 f32[3]}", "x=f32[3]", "y=i64[3]"], "expected ':'"),
    (["dump", "mlp.py:lose", *MLP_SPECS], "did you mean 'loss'"),
    (["dump", "mlp.py:loss", "x=f32[8,20]"], "missing a required argument: 'params'"),
    (["dump", "mlp.py:loss", *MLP_SPECS, "z=f32[3]"], "unexpected keyword argument 'z'"),
    (["dump", "mlp.py:loss", "--args-from", "exampel_args"], "did you mean 'example_args'"),
    (["dump", "mlp.py", "x=f32[3]"], "need a function: mlp.py:FUNC"),
    (["dump", "mlp.py:loss", *MLP_SPECS, "--", "a"], "arguments after -- are for a script"),
    (["dump", "mlp.py:loss", "--format", "asm"], "invalid choice: 'asm'"),
    (["dump", "mlp.py:loss", "--format", "ir", *MLP_SPECS, "--frob"], "unrecognized arguments: --frob"),
    (["cache", "purge"], "invalid choice: 'purge'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_arguments(project, args, expected):
    line = one_line_error(run_cli(*args, cwd=project))
    assert expected in line


def test_unknown_function_lists_what_exists(project):
    line = one_line_error(run_cli("dump", "mlp.py:nothing_alike", "x=f32[3]", cwd=project))
    assert "has no function 'nothing_alike'" in line
    assert "loss, predict, example_args" in line  # tj.jit-decorated functions count too; `np` does not


def test_error_in_users_code_is_exit_1_pointing_at_the_users_line(project):
    (project / "broken.py").write_text(
        "import numpy as np\n\ndef f(x):\n    return np.unique(x)\n\ndef g(p):\n    return p['W'].sum()\n")
    result = run_cli("dump", "broken.py:f", "x=f32[4]", cwd=project)
    assert result.returncode == 1
    assert "unique" in result.stderr and "broken.py" in result.stderr  # UnsupportedOperation names both
    result = run_cli("dump", "broken.py:g", "p={V:f32[3]}", cwd=project)
    assert result.returncode == 1 and "KeyError: 'W'" in result.stderr
    assert 'broken.py", line 7' in result.stderr and "tracejit/" not in result.stderr  # only the user's frames


# ---- cache, bench, version, help ---------------------------------------------------------------
def test_cache_path_info_clear(project, tmp_path):
    from tracejit.compile import cache, get_or_build

    cache_dir = tmp_path / "my-cache"
    env = {"TRACEJIT_CACHE_DIR": str(cache_dir)}
    path = run_cli("cache", "path", cwd=project, env=env)
    assert path.returncode == 0 and path.stdout.strip() == str(cache_dir)
    empty = run_cli("cache", "info", cwd=project, env=env)
    assert empty.returncode == 0 and "entries: 0" in empty.stdout

    os.environ["TRACEJIT_CACHE_DIR"] = str(cache_dir)  # restored by conftest's monkeypatch
    for n in (1, 2):
        get_or_build(f"int tj_main(void) {{ return {n}; }}\n", "int tj_main(void);")
    entries = cache.list_entries()
    info = run_cli("cache", "info", "-v", cwd=project, env=env)
    assert info.returncode == 0, info.stderr
    assert "entries: 2" in info.stdout and "oldest:" in info.stdout and "newest:" in info.stdout
    assert all(e.key[:16] in info.stdout for e in entries)
    cleared = run_cli("cache", "clear", cwd=project, env=env)
    assert cleared.returncode == 0 and "removed 2 entries" in cleared.stdout
    assert cache.list_entries() == []
    assert "entries: 0" in run_cli("cache", "info", cwd=project, env=env).stdout


def test_version_and_installed_script(project):
    result = run_cli("--version", cwd=project)
    assert result.returncode == 0 and result.stdout.startswith(f"tracejit {tj.__version__} ")
    script = shutil.which("tracejit", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if script is None:
        pytest.skip("the `tracejit` console script is not installed (pip install -e . installs it)")
    via_script = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--format", "ir", cwd=project, command=[script])
    via_module = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--format", "ir", cwd=project)
    assert via_script.returncode == 0 and via_script.stdout == via_module.stdout


@pytest.mark.parametrize("command", [[], ["dump"], ["cache"], ["bench"]])
def test_help(project, command):
    result = run_cli(*command, "--help", cwd=project)
    assert result.returncode == 0 and result.stdout.startswith("usage: tracejit")
    if command == ["dump"]:
        assert "f32[128,784]" in result.stdout and "--grad" in result.stdout and "TRACEJIT_DUMP" in result.stdout


def test_bench_runner_located_and_called(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_cmd, "candidates", lambda: [tmp_path / "benchmarks" / "run.py"])
    assert main(["bench", "--quick"]) == 2
    assert str(tmp_path / "benchmarks" / "run.py") in capsys.readouterr().err
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text("def main(argv):\n    print('runner got', argv)\n    return 0\n")
    assert main(["bench", "--quick", "-n", "3"]) == 0
    assert "runner got ['--quick', '-n', '3']" in capsys.readouterr().out


# ---- shape specs and colour, in-process --------------------------------------------------------
def test_shape_specs_build_the_described_pytrees():
    name, value = specs.parse_arg("params={W1:f32[784,512], 'b 1':f64[], n:(i32[2],[bool[1,0]]), lr:0.5, k:3}")
    assert name == "params"
    assert value["W1"].shape == (784, 512) and value["W1"].dtype == np.float32
    assert value["b 1"].shape == () and value["b 1"].dtype == np.float64
    t = value["n"]
    assert isinstance(t, tuple) and t[0].dtype == np.int32 and isinstance(t[1], list)
    assert t[1][0].shape == (1, 0) and t[1][0].dtype == np.bool_
    assert value["lr"] == 0.5 and type(value["lr"]) is float and value["k"] == 3 and type(value["k"]) is int
    assert specs.parse_arg("f64")[1].shape == () and specs.parse_arg("x=i64[5]")[1].dtype == np.int64


@pytest.mark.parametrize("text", ["x=f32[3", "x=f16[3]", "x=f32[3.5]", "x=", "x={a:}", "x=f32[3]]", "x=@"])
def test_bad_shape_specs_name_the_spec(text):
    with pytest.raises(specs.SpecError, match=r"bad shape spec .*column \d+"):
        specs.parse_arg(text)


def test_colour_only_on_a_terminal(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert want_color("auto", Tty()) and not want_color("auto", open(os.devnull, "w"))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not want_color("auto", Tty()) and want_color("always", Tty())
    ir = "  %1:f32[3] = tanh %0    # f.py:3"
    assert highlight(ir, "ir", False) == ir
    coloured = highlight(ir, "ir", True)
    assert "\033[" in coloured and "tanh" in coloured and "%1" in coloured


def test_piped_output_is_plain_and_color_always_is_not(project):
    plain = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--format", "ir", cwd=project)
    coloured = run_cli("dump", "mlp.py:loss", *MLP_SPECS, "--format", "ir", "--color", "always", cwd=project)
    assert "\033[" not in plain.stdout and "\033[" in coloured.stdout


def test_progress_line_only_on_a_terminal_and_erased_after(monkeypatch):
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(progress, "DELAY_S", 0.01)
    monkeypatch.setattr(progress, "EVERY_S", 0.01)
    for stream, shown in ((Tty(), True), (io.StringIO(), False)):
        with progress("compiling loss", stream=stream):
            import time
            time.sleep(0.1)
        text = stream.getvalue()
        assert ("compiling loss ... " in text and text.endswith("\r\033[K")) is shown, text

"""Every way ``snnmetrics profile`` can fail: one line on stderr, exit status 2, no traceback,
and before the first batch wherever the failure can be known then."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch

import snnmetrics.cli
from snnmetrics.cli import main

_names = itertools.count()


def _module(tmp_path, monkeypatch, source: str) -> str:
    """Write ``source`` as a fresh module in the current folder; its importable name."""
    name = f"user_module_{next(_names)}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def _fails(capsys, args: list[str]) -> str:
    """Run the command; it must exit 2 with one line on stderr, no traceback; the line."""
    assert main(["profile", "--no-progress", "--batches", "1", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("snnmetrics: error: ")
    return err.strip()


MODEL = """
import torch

def model():
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
"""


@pytest.mark.parametrize(
    "source, factory, message",
    [
        (
            "def build():\n    raise RuntimeError('weights.pt not found')\n",
            "build",
            "--model {m}:build raised RuntimeError: weights.pt not found (at {m}.py:2)",
        ),
        (
            "import torch\ndef build(path):\n    return torch.nn.Linear(3, 4)\n",
            "build",
            "--model {m}:build raised TypeError: build() missing 1 required positional "
            "argument: 'path'",
        ),
        (
            "def build(:\n    pass\n",
            "build",
            "importing {m} (--model) raised SyntaxError: invalid syntax ({m}.py, line 1)",
        ),
        (
            "raise ValueError('set MY_CONFIG first')\n",
            "build",
            "importing {m} (--model) raised ValueError: set MY_CONFIG first (at {m}.py:1)",
        ),
        (
            "import no_such_package_xyz\n",
            "build",
            "importing {m} (--model) raised ModuleNotFoundError: No module named "
            "'no_such_package_xyz' (at {m}.py:1)",
        ),
        (
            "import torch\n"
            "class Net(torch.nn.Module):\n"
            "    def forward(self, x):\n"
            "        assert x.shape[-1] == 5, 'expected 5 features'\n"
            "        return self.linear(x)\n"
            "    def __init__(self):\n"
            "        super().__init__()\n"
            "        self.linear = torch.nn.Linear(5, 2)\n"
            "def build():\n"
            "    return Net()\n",
            "build",
            "the model's forward on batch 1 raised AssertionError: expected 5 features "
            "(at {m}.py:4)",
        ),
        ("X = 3\n", "X", "--model '{m}:X' is an int, not a function"),
        ("def build():\n    return 3\n", "build", "--model {m}:build returned an int, not an nn"),
        ("X = 3\n", "missing", "--model '{m}:missing': module '{m}' has no 'missing'"),
    ],
)
def test_user_model_errors(capsys, tmp_path, monkeypatch, source, factory, message):
    name = _module(tmp_path, monkeypatch, source)
    err = _fails(capsys, ["--model", f"{name}:{factory}", "--input-shape", "3"])
    assert err.startswith("snnmetrics: error: " + message.format(m=name)), err


def test_a_forward_error_from_torch_names_the_batch(capsys):
    # Linear(3, 4) fed 5 features per step
    err = _fails(capsys, ["--model", "tests.test_cli:tiny_model", "--input-shape", "5"])
    assert "the model's forward on batch 1 raised RuntimeError: mat1 and mat2" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nonsense"], "--model must look like 'package.module:function'"),
        (["--model", "no_such_module_xyz:f", "--input-shape", "3"], "no module named"),
        (["--model", "tests.test_cli:tiny_model"], "--input-shape is required"),
        (["--input-shape", "3,-1"], "--input-shape must be positive"),
        (["--input-shape", "a,b"], "--input-shape must be comma-separated"),
        (["--device", "warp-drive"], "unknown --device"),
        (["--data", "tests.test_cli_data:labelled", "--timesteps", "3"], "--timesteps set the"),
        (["--data", "nonsense"], "--data must look like"),
        (["--json", ""], "--json needs a file name"),
        (["--plots", ""], "--plots needs a folder name"),
    ],
)
def test_bad_arguments(capsys, args, message):
    assert message in _fails(capsys, args)


def test_cuda_without_cuda(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert "CUDA is not available" in _fails(capsys, ["--device", "cuda"])


@pytest.mark.parametrize("args", [["--batches", "0"], ["--rate", "1.5"], ["--timesteps", "x"]])
def test_argparse_rejects_bad_numbers(args):
    with pytest.raises(SystemExit) as info:
        main(["profile", *args])
    assert info.value.code == 2


@pytest.fixture
def no_run(monkeypatch):
    """Make the run itself fail loudly: a check that passes it comes too late."""

    def run(*args, **kwargs):
        raise AssertionError("the run started before the arguments were checked")

    monkeypatch.setattr(snnmetrics.cli, "profile", run)


def test_an_unwritable_json_path_fails_before_the_run(capsys, tmp_path, no_run):
    missing = tmp_path / "no" / "such" / "folder" / "x.json"
    err = _fails(capsys, ["--json", str(missing), "--batches", "40"])
    assert err == f"snnmetrics: error: cannot write --json {missing}: No such file or directory"
    assert _fails(capsys, ["--json", str(tmp_path)]).endswith("it is a folder")
    assert not missing.parent.exists()


def test_json_into_proc_fails_with_its_name(capsys, tmp_path):
    if not __import__("os").path.exists("/proc/version"):
        pytest.skip("no /proc here")
    assert "cannot write --json /proc/version" in _fails(capsys, ["--json", "/proc/version"])


def test_a_json_check_leaves_no_file_behind(capsys, tmp_path, no_run, monkeypatch):
    """The check opens the path; a run that then fails must not leave an empty file."""
    path = tmp_path / "out.json"
    _fails(capsys, ["--json", str(path), "--model", "nonexistent_xyz:f", "--input-shape", "3"])
    _fails(capsys, ["--json", str(path), "--device", "warp-drive"])
    assert not path.exists()


def test_plots_into_a_file_fail_before_the_run(capsys, tmp_path, no_run):
    file = tmp_path / "not_a_folder"
    file.write_text("x")
    assert _fails(capsys, ["--plots", str(file)]).endswith("it is a file, not a folder")


def test_plots_without_matplotlib_fail_before_the_run(capsys, tmp_path, no_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    err = _fails(capsys, ["--plots", str(tmp_path / "figs")])
    assert err == "snnmetrics: error: --plots needs matplotlib: pip install 'snnmetrics[plot]'"


def test_traceback_shows_the_whole_trace(capsys, tmp_path, monkeypatch):
    name = _module(tmp_path, monkeypatch, "def build():\n    raise KeyError('layer4')\n")
    args = ["profile", "--no-progress", "--model", f"{name}:build", "--input-shape", "3"]
    assert main([*args, "--traceback"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert f'{name}.py", line 2, in build' in err
    assert err.strip().splitlines()[-1] == (
        f"snnmetrics: error: --model {name}:build raised KeyError: 'layer4' (at {name}.py:2)"
    )


def test_a_closed_pipe_ends_quietly():
    """``snnmetrics profile | head -2``: the reader leaves; no traceback, the status of SIGPIPE."""
    run = subprocess.Popen(
        [sys.executable, "-m", "snnmetrics", "profile", "--batches", "1", "--timesteps", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()  # before the report is written: every write meets a closed pipe
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 141
    assert err == ""


def test_undefined_figures_fail_in_one_line(capsys, tmp_path, monkeypatch):
    """A model that turns its input into NaN: the figures cannot be computed; the first
    section that finds it says so (it was a traceback)."""
    source = """
    import torch
    import snntorch as snn

    class Poison(torch.nn.Module):
        def forward(self, x):
            return x * float("nan")

    def build():
        return torch.nn.Sequential(
            Poison(), torch.nn.Linear(3, 4), snn.Leaky(beta=0.9, init_hidden=True)
        )
    """
    name = _module(tmp_path, monkeypatch, source)
    err = _fails(capsys, ["--model", f"{name}:build", "--input-shape", "3", "--timesteps", "2"])
    assert err.startswith(
        "snnmetrics: error: computing the synaptic operations: a connection layer received NaN "
        "inputs"
    )

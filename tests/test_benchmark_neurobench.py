"""snnmetrics.Benchmark against NeuroBench 2.3.0's Benchmark: the whole results dict.

Both run the same script on identical copies of a model and the same loader: conv and MLP
SNNs with Leaky and Synaptic neurons (reset by subtraction and to zero), binary and graded
input, zero weights and a dead layer, a last batch of another size; metrics named by
strings and by NeuroBench's classes; the model given to us plain or in NeuroBench's
wrapper. The dicts must be equal: same keys in the same order, same nested keys, same
values (exactly, but for R2, which NeuroBench computes in float32), and the same files.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.optional

pytest.importorskip(
    "neurobench", reason="neurobench not installed: pip install --no-deps neurobench==2.3.0"
)

import torch  # noqa: E402
from neurobench.benchmarks import Benchmark as NeuroBenchBenchmark  # noqa: E402
from neurobench.metrics import static as nb_static  # noqa: E402
from neurobench.metrics import workload as nb_workload  # noqa: E402
from neurobench.models import SNNTorchModel, TorchModel  # noqa: E402
from neurobench.processors.postprocessors import ChooseMaxCount  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from snnmetrics import Benchmark  # noqa: E402
from tests.test_benchmark import (  # noqa: E402
    ALL_STATIC,
    ALL_WORKLOAD,
    ConvSNN,
    dataset,
    mlp_snn,
)


def dead_layer_snn() -> nn.Sequential:
    net = mlp_snn()
    with torch.no_grad():
        net[2].weight.zero_()  # the Synaptic layer gets no input: its membrane never changes
    return net


MODELS = {"mlp": (mlp_snn, (6,)), "conv": (ConvSNN, (1, 6, 6)), "dead": (dead_layer_snn, (6,))}
CLASSES = {
    **{
        name: getattr(nb_static, name)
        for name in ("Footprint", "ConnectionSparsity", "ParameterCount")
    },
    **{
        name: getattr(nb_workload, name)
        for name in (
            "ClassificationAccuracy",
            "ActivationSparsity",
            "ActivationSparsityByLayer",
            "SynapticOperations",
            "MembraneUpdates",
            "NeuronOperations",
            "MSE",
            "R2",
            "SMAPE",
        )
    },
}


def class_of(name: str) -> type:
    return CLASSES["".join(word.title() for word in name.split("_"))]


def metric_list(naming: str, static: list[str], workload: list[str]) -> list[list]:
    if naming == "strings":
        return [static, workload]
    return [[class_of(name) for name in static], [class_of(name) for name in workload]]


def loader_for(shape: tuple[int, ...], inputs: str) -> DataLoader:
    data = dataset(shape)
    if inputs == "binary":
        data = TensorDataset((data.tensors[0] != 0).float(), data.tensors[1])
    return DataLoader(data, batch_size=3)  # 3, 3, 1


def run_both(make_net, loader, post, metrics, wrap, ours_wrapped=False):
    theirs_bench = NeuroBenchBenchmark(wrap(make_net()), loader, [], post, metrics)
    theirs = theirs_bench.run(quiet=True)
    theirs_bench.workload_metric_manager.cleanup_hooks(theirs_bench.model)
    ours_bench = Benchmark(
        wrap(make_net()) if ours_wrapped else make_net(), loader, [], post, metrics
    )
    return theirs, ours_bench.run(quiet=True), theirs_bench, ours_bench


@pytest.mark.parametrize("naming", ["strings", "classes"])
@pytest.mark.parametrize("inputs", ["binary", "graded"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_snn_results_equal_neurobench(model, inputs, naming):
    make_net, shape = MODELS[model]
    metrics = metric_list(naming, ALL_STATIC, ALL_WORKLOAD)
    theirs, ours, _, _ = run_both(
        make_net, loader_for(shape, inputs), [ChooseMaxCount()], metrics, SNNTorchModel
    )
    synops = theirs[metrics[1][3] if naming == "strings" else "SynapticOperations"]
    assert synops["Effective_ACs"] > 0
    assert (synops["Effective_MACs"] > 0) == (inputs == "graded")
    assert ours == theirs
    assert [type(v) for v in ours.values()] == [type(v) for v in theirs.values()]


def test_a_neurobench_wrapped_model_gives_the_same_dict():
    make_net, shape = MODELS["conv"]
    metrics = metric_list("classes", ALL_STATIC, ALL_WORKLOAD)
    theirs, ours, _, _ = run_both(
        make_net,
        loader_for(shape, "graded"),
        [ChooseMaxCount()],
        metrics,
        SNNTorchModel,
        ours_wrapped=True,
    )
    assert ours == theirs


def regression_ann() -> nn.Sequential:
    torch.manual_seed(6)
    return nn.Sequential(nn.Flatten(), nn.Linear(4 * 6, 8), nn.ReLU(), nn.Linear(8, 2), nn.ReLU())


def regression_loader() -> DataLoader:
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(8, 4, 6, generator=gen)
    y = torch.relu(torch.randn(8, 2, generator=gen))  # zeros: SMAPE meets 0 / 0
    return DataLoader(TensorDataset(x, y), batch_size=3)  # 3, 3, 2


@pytest.mark.parametrize("naming", ["strings", "classes"])
def test_regression_results_equal_neurobench(naming):
    workload = ["mse", "r2", "sMAPE", "activation_sparsity", "synaptic_operations"]
    metrics = metric_list("strings", ALL_STATIC, workload)
    if naming == "classes":
        metrics = [
            [class_of(name) for name in ALL_STATIC],
            [CLASSES[name] for name in ("MSE", "R2", "SMAPE")]
            + [class_of(name) for name in workload[3:]],
        ]
    loader = regression_loader()
    theirs, ours, _, _ = run_both(regression_ann, loader, [], metrics, TorchModel)
    net = regression_ann()
    with torch.no_grad():
        assert any(bool(((net(x) == 0) & (y == 0)).any()) for x, y in loader)  # the NaN rule
    r2 = "r2" if naming == "strings" else "R2"
    assert ours.pop(r2) == pytest.approx(theirs.pop(r2), rel=1e-6)  # float32 in NeuroBench
    assert ours == theirs


@pytest.mark.parametrize("file_format", ["json", "csv", "txt"])
def test_saved_files_are_identical(tmp_path, file_format):
    make_net, shape = MODELS["mlp"]
    metrics = metric_list("classes", ALL_STATIC, ALL_WORKLOAD)
    _, _, theirs, ours = run_both(
        make_net, loader_for(shape, "graded"), [ChooseMaxCount()], metrics, SNNTorchModel
    )
    theirs.save_benchmark_results(str(tmp_path / "theirs"), file_format)
    ours.save_benchmark_results(str(tmp_path / "ours"), file_format)
    expected = (tmp_path / f"theirs.{file_format}").read_text()
    assert (tmp_path / f"ours.{file_format}").read_text() == expected

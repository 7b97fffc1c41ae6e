"""`SynapticOperations`: hand counts, NeuroBench's unit-test values, published architecture
figures, and a reference counter that re-implements NeuroBench's rule (binarise the input
and the weights of each layer call, re-run the layer without bias, sum the outputs)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from snnmetrics import SynapticOperations
from snnmetrics.functional import fanout, parameter_count
from tests.workloads import gsc_snn

CONNECTIONS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# compute() before any update() is tested on purpose
pytestmark = pytest.mark.filterwarnings("ignore:The ``compute`` method of metric")


# ----------------------------------------------------------------------------- helpers


def _run_layer(layer: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, w)
    conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[type(layer)]
    padding = layer.padding
    if layer.padding_mode != "zeros":
        x = F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode)
        padding = 0
    return conv(x, w, None, layer.stride, padding, layer.dilation, layer.groups)


class Reference:
    """Counts per layer name, as NeuroBench defines them, with Python ints."""

    def __init__(self, model: nn.Module, skip_zero_weights: bool = True) -> None:
        self.skip_zero_weights = skip_zero_weights
        self.acs: dict[str, int] = {}
        self.macs: dict[str, int] = {}
        self.dense: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, CONNECTIONS):
                for table in (self.acs, self.macs, self.dense, self.calls):
                    table[name] = 0
                self.handles.append(module.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args):
            x = args[0].detach().double()
            w = module.weight.detach().double()
            mask = (w != 0).double() if self.skip_zero_weights else torch.ones_like(w)
            effective = int(_run_layer(module, (x != 0).double(), mask).sum())
            dense = int(_run_layer(module, torch.ones_like(x), torch.ones_like(w)).sum())
            spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
            (self.acs if spiking else self.macs)[name] += effective
            self.dense[name] += dense
            self.calls[name] += 1

        return hook

    def totals(self) -> dict[str, int]:
        acs, macs = sum(self.acs.values()), sum(self.macs.values())
        return {
            "synops": acs + macs,
            "effective_acs": acs,
            "effective_macs": macs,
            "dense": sum(self.dense.values()),
        }

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def as_floats(result: dict[str, torch.Tensor]) -> dict[str, float]:
    return {key: float(value) for key, value in result.items()}


def per_sample(totals: dict[str, int], samples: int) -> dict[str, float]:
    return {key: value / samples for key, value in totals.items()}


def reset_neurons(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def dyadic_(module: nn.Module, seed: int) -> nn.Module:
    """Weights in {-3/4, ..., 3/4} (about 1/7 zeros): every sum is exact in float32."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randint(-3, 4, p.shape, generator=gen).float() / 4)
    return module


def linear_with(weight) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


# nonzero weights per input column: [2, 0, 1, 3]
W_SPARSE = [[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 3.0, 4.0], [5.0, 0.0, 0.0, -6.0]]


# ----------------------------------------------------------------------------- hand cases


def test_linear_sparse_input_and_zero_weights_by_hand():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    model(x)  # sample 0: 2 + 0, sample 1: 1 + 3
    model(x[[1, 0]])
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 6.0,
        "effective_acs": 6.0,
        "effective_macs": 0.0,
        "dense": 24.0,
    }


def test_dense_input_counts_every_nonzero_weight():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(3, 4))
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 6.0,
        "effective_acs": 6.0,
        "effective_macs": 0.0,
        "dense": 12.0,
    }


def test_zero_input_counts_only_dense():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.zeros(2, 4))
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 0.0,
        "effective_acs": 0.0,
        "effective_macs": 0.0,
        "dense": 12.0,
    }


def test_graded_input_is_mac():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.tensor([[0.5, 0.0, 0.0, -2.0], [0.0, 7.0, 1.0, 0.0]]))  # 2 + 3, 0 + 1
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 3.0,
        "effective_acs": 0.0,
        "effective_macs": 3.0,
        "dense": 12.0,
    }


def test_ac_or_mac_is_decided_per_call_within_one_window():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.tensor([[1.0, 0.0, 0.0, 1.0]]))  # spikes: 5 ACs
    model(torch.tensor([[0.0, 0.0, 1.0, 0.25]]))  # one graded value: 4 MACs
    model(torch.tensor([[-1.0, 1.0, -1.0, 0.0]]))  # signed spikes: 3 ACs
    model(torch.tensor([[2.0, 0.0, 0.0, 0.0]]))  # a count of 2: 2 MACs
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 14.0,
        "effective_acs": 8.0,
        "effective_macs": 6.0,
        "dense": 48.0,
    }


@pytest.mark.parametrize(
    "x",
    [
        torch.full((2, 4), 2.0),
        torch.full((2, 4), 0.5),
        torch.tensor([[3.0, -3.0, 3.0, 3.0], [-3.0, -3.0, 3.0, -3.0]]),
    ],
    ids=["all-twos", "all-halves", "plus-minus-three"],
)
def test_constant_non_unit_input_is_mac(x):
    # NeuroBench: AC only if every value is in {-1, 0, 1}; 2.0 / 0.5 / +-3 are not
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(x)
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 6.0,
        "effective_acs": 0.0,
        "effective_macs": 6.0,
        "dense": 12.0,
    }


def test_skip_zero_weights_false_counts_zero_weights():
    model = nn.Sequential(linear_with(W_SPARSE))
    counting_zeros = SynapticOperations(model, skip_zero_weights=False)
    skipping = SynapticOperations(model)
    model(torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]))  # 3 nonzero inputs x 3
    model(torch.tensor([[0.0, 0.0, 0.0, 1.5], [0.0, 0.0, 0.0, 0.0]]))  # 1 nonzero x 3, MAC
    counting_zeros.update()
    skipping.update()
    assert as_floats(counting_zeros.compute()) == {
        "synops": 6.0,
        "effective_acs": 4.5,
        "effective_macs": 1.5,
        "dense": 24.0,
    }
    # with zero weights skipped: (2 + 0 + 0) + 3
    assert as_floats(skipping.compute()) == {
        "synops": 2.5,
        "effective_acs": 1.0,
        "effective_macs": 1.5,
        "dense": 24.0,
    }


def test_bias_is_not_counted():
    with_bias = nn.Linear(4, 3)
    with torch.no_grad():
        with_bias.weight.copy_(torch.tensor(W_SPARSE))
        with_bias.bias.fill_(5.0)
    metric = SynapticOperations(nn.Sequential(with_bias))
    metric.model(torch.ones(1, 4))
    metric.update()
    assert float(metric.compute()["synops"]) == 6.0


def test_conv_by_hand():
    conv = nn.Conv1d(1, 2, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0, 0.0, 1.0]], [[0.0, 1.0, 0.0]]]))
    metric = SynapticOperations(nn.Sequential(conv))
    # input positions 0 and 3 of length 4 spike; fanout with zero weights skipped:
    # position 0: channel 0 read by output 1 (tap 0) = 1; channel 1 by output 0 = 1 -> 2
    # position 3: channel 0 read by output 2 (tap 2) = 1; channel 1 by output 3 = 1 -> 2
    metric.model(torch.tensor([[[1.0, 0.0, 0.0, 1.0]]]))
    metric.update()
    # dense: taps reading a real input: per output channel 2 + 3 + 3 + 2 = 10
    assert as_floats(metric.compute()) == {
        "synops": 4.0,
        "effective_acs": 4.0,
        "effective_macs": 0.0,
        "dense": 20.0,
    }


# ----------------------------------------------------------------------------- NeuroBench


def test_neurobench_unit_two_linear_layers():
    # literature.md 1.2: Linear(20,25,no bias) -> Sigmoid -> Linear(25,25) -> ReLU, 1x20 input
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 25, bias=False), nn.Sigmoid(), nn.Linear(25, 25), nn.ReLU())
    metric = SynapticOperations(model)
    model(torch.rand(1, 20) + 0.1)  # nonzero, graded
    metric.update()
    result = as_floats(metric.compute())
    assert result["effective_macs"] == 1125.0
    assert result["effective_acs"] == 0.0


def test_neurobench_unit_four_linear_layers():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Linear(20, 20, bias=False),
        nn.Sigmoid(),
        nn.Linear(20, 25, bias=False),
        nn.Sigmoid(),
        nn.Linear(25, 25, bias=False),
        nn.Sigmoid(),
        nn.Linear(25, 25, bias=False),
        nn.Sigmoid(),
    )
    metric = SynapticOperations(model)
    model(torch.rand(1, 20) + 0.1)
    metric.update()
    assert float(metric.compute()["effective_macs"]) == 2 * 625 + 400 + 500


@pytest.mark.parametrize(("size", "expected"), [(3, 9), (12, 900)])
def test_neurobench_unit_conv2d(size, expected):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False))
    metric = SynapticOperations(model)
    model(torch.rand(1, 1, size, size) + 0.1)
    metric.update()
    assert float(metric.compute()["effective_macs"]) == expected


def test_neurobench_unit_conv1d():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv1d(5, 1, 5))
    metric = SynapticOperations(model)
    model(torch.rand(1, 5, 10) + 0.1)
    metric.update()
    assert float(metric.compute()["effective_macs"]) == 150


def test_neurobench_unit_linear_leaky_acs():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(20, 5), snn.Leaky(beta=0.9, init_hidden=True))
    metric = SynapticOperations(model)
    for _ in range(10):
        model(torch.ones(5, 20))
    metric.update()
    result = as_floats(metric.compute())
    assert result["effective_acs"] == 1000.0
    assert result["effective_macs"] == 0.0


# ----------------------------------------------------------------------------- architectures


def test_gsc_snn_dense_and_parameters():
    # literature.md 2: 145,955 parameters; Dense 29,030,400 per sample at T=200, i.e.
    # 145,152 per step; here T=10 -> 1,451,520
    torch.manual_seed(5)
    model = gsc_snn()
    assert parameter_count(model) == 145_955
    metric = SynapticOperations(model)
    for _ in range(10):
        model((torch.rand(3, 20) < 0.3).float())
    metric.update()
    result = as_floats(metric.compute())
    assert result["dense"] == 29_030_400 * 10 / 200 == 1_451_520
    assert result["effective_macs"] == 0.0  # spikes in, spikes between layers
    assert 0 < result["effective_acs"] < result["dense"]


def test_dvs_gesture_snn_dense_with_same_padding():
    # literature.md 2: 5,941,376 per step, 891,206,400 at T=150; here T=2
    def leaky(**kwargs):
        return snn.Leaky(beta=0.5, init_hidden=True, **kwargs)

    model = nn.Sequential(
        nn.Conv2d(2, 16, 5, padding="same"),
        nn.MaxPool2d(2),
        leaky(),
        nn.Conv2d(16, 32, 5, padding="same"),
        nn.MaxPool2d(2),
        leaky(),
        nn.Conv2d(32, 64, 5, padding="same"),
        nn.MaxPool2d(2),
        leaky(),
        nn.Flatten(),
        nn.Linear(1024, 11),
        leaky(output=True),
    )
    assert parameter_count(model) == 76_187
    metric = SynapticOperations(model)
    for _ in range(2):
        model(torch.randint(0, 3, (1, 2, 32, 32)).float())  # event counts: MACs at conv1
    metric.update()
    result = as_floats(metric.compute())
    assert result["dense"] == 891_206_400 * 2 / 150 == 2 * 5_941_376
    assert result["effective_macs"] > 0


class M5(nn.Module):
    """GSC ANN M5 of NeuroBench's examples (literature.md 2)."""

    def __init__(self) -> None:
        super().__init__()
        blocks = []
        for cin, cout, kernel, stride in (
            (1, 32, 80, 16),
            (32, 32, 3, 1),
            (32, 64, 3, 1),
            (64, 64, 3, 1),
        ):
            blocks += [
                nn.Conv1d(cin, cout, kernel, stride=stride),
                nn.BatchNorm1d(cout),
                nn.ReLU(),
                nn.MaxPool1d(4),
            ]
        self.features = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(64, 35)

    def forward(self, x):
        x = self.features(x)
        x = F.avg_pool1d(x, x.shape[-1]).permute(0, 2, 1)
        return self.fc1(x)


def test_gsc_ann_m5_dense():
    torch.manual_seed(6)
    model = M5().eval()
    assert parameter_count(model) == 26_915
    metric = SynapticOperations(model)
    model(torch.randn(2, 1, 8000))
    metric.update()
    result = as_floats(metric.compute())
    assert result["dense"] == 1_880_256
    assert result["effective_acs"] == 0.0
    assert 0 < result["effective_macs"] <= result["dense"]


# ----------------------------------------------------------------------------- recurrent


@pytest.mark.parametrize(("reset", "calls_per_step"), [("subtract", 1), ("zero", 2)])
def test_rleaky_recurrent_linear_is_counted(reset, calls_per_step):
    torch.manual_seed(7)
    fc = nn.Linear(6, 5, bias=False)
    with torch.no_grad():
        fc.weight.uniform_(0.2, 1.0)
    neuron = snn.RLeaky(beta=0.5, linear_features=5, reset_mechanism=reset)
    with torch.no_grad():
        neuron.recurrent.weight.mul_((torch.rand(5, 5) > 0.4).float())
    model = nn.Sequential(OrderedDict(fc=fc, neuron=neuron))
    metric = SynapticOperations(model)
    assert metric.layer_names == ["fc", "neuron.recurrent"]

    batch, steps = 3, 6
    xs = (torch.rand(steps, batch, 6) < 0.6).float()
    nnz_fc = (fc.weight != 0).sum(0).tolist()
    nnz_rec = (neuron.recurrent.weight != 0).sum(0).tolist()
    expected_fc = expected_rec = 0
    previous = torch.zeros(batch, 5)  # the recurrent input of the first step
    for t in range(steps):
        spk, _ = neuron(fc(xs[t]))
        assert set(spk.unique().tolist()) <= {0.0, 1.0}
        expected_fc += sum(nnz_fc[i] for b in range(batch) for i in range(6) if xs[t, b, i])
        expected_rec += calls_per_step * sum(
            nnz_rec[i] for b in range(batch) for i in range(5) if previous[b, i]
        )
        previous = spk.detach()
    assert expected_rec > 0
    metric.update()
    per_layer = metric.compute_per_layer()
    assert float(per_layer["fc"]["effective_acs"]) == expected_fc / batch
    assert float(per_layer["neuron.recurrent"]["effective_acs"]) == expected_rec / batch
    assert float(per_layer["neuron.recurrent"]["dense"]) == calls_per_step * steps * 25
    assert float(per_layer["neuron.recurrent"]["effective_macs"]) == 0.0


# ----------------------------------------------------------------------------- random models


def conv_snn(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    model = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(2, 4, 3, stride=2, padding=1),
            lif1=snn.Leaky(beta=0.5, init_hidden=True),
            block=nn.Sequential(
                nn.Conv2d(4, 4, 3, padding="same", dilation=2, groups=2),
                snn.Leaky(beta=0.5, init_hidden=True, graded_spikes_factor=0.5),
                nn.Flatten(),
                nn.Linear(4 * 3 * 3, 5, bias=False),
            ),
            lif2=snn.Leaky(beta=0.5, init_hidden=True, output=True),
        )
    )
    return dyadic_(model, seed)


def test_per_layer_names_and_values_match_the_reference():
    model = conv_snn(8)
    reference = Reference(model)
    metric = SynapticOperations(model)
    assert metric.layer_names == ["conv1", "block.0", "block.3"]
    torch.manual_seed(9)
    for _ in range(3):
        model(torch.randint(0, 3, (4, 2, 6, 6)).float())
    metric.update()
    per_layer = metric.compute_per_layer()
    assert set(per_layer) == {"conv1", "block.0", "block.3"}
    for name in per_layer:
        got = as_floats(per_layer[name])
        assert got == {
            "synops": (reference.acs[name] + reference.macs[name]) / 4,
            "effective_acs": reference.acs[name] / 4,
            "effective_macs": reference.macs[name] / 4,
            "dense": reference.dense[name] / 4,
        }
    # graded spikes (factor 0.5) make the Linear a MAC layer; the counts feed conv1 MACs
    assert reference.macs["block.3"] > 0 and reference.macs["conv1"] > 0
    # per-layer figures are exact; their sum may round in the last bit
    assert as_floats(metric.compute()) == pytest.approx(
        per_sample(reference.totals(), 4), rel=1e-14
    )


@pytest.mark.parametrize("skip_zero_weights", [True, False])
def test_random_conv_models_match_the_reference(skip_zero_weights):
    torch.manual_seed(10)
    model = nn.Sequential(
        nn.Conv1d(3, 6, 5, stride=2, padding=2, groups=3),
        nn.Sigmoid(),
        nn.Conv1d(6, 4, 3, padding=2, dilation=2, padding_mode="reflect"),
        nn.ReLU(),
        nn.Conv1d(4, 4, 2, padding="same", padding_mode="circular"),
        nn.Flatten(),
        nn.Linear(4 * 8, 3),
        nn.Unflatten(1, (1, 1, 1, 3)),
        nn.Conv3d(1, 2, (1, 1, 2), padding=(0, 1, 1)),
    )
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, CONNECTIONS):
                layer.weight.mul_((torch.rand_like(layer.weight) > 0.3).float())
    reference = Reference(model, skip_zero_weights)
    metric = SynapticOperations(model, skip_zero_weights=skip_zero_weights)
    samples = 0
    for batch in (2, 5, 1):
        x = torch.randn(batch, 3, 16) * (torch.rand(batch, 3, 16) > 0.5)
        model(x)
        model((x > 0).float())
        metric.update()
        samples += batch
    assert as_floats(metric.compute()) == pytest.approx(
        per_sample(reference.totals(), samples), rel=1e-14
    )
    assert reference.acs and reference.totals()["effective_macs"] > 0


def test_fanout_function_agrees_with_the_metric():
    torch.manual_seed(11)
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=(1, 2), dilation=(2, 1), groups=1)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.5).float())
    metric = SynapticOperations(nn.Sequential(conv))
    x = (torch.rand(2, 3, 9, 7) < 0.3).float()
    conv(x)
    metric.update()
    effective = (x.ne(0).long() * fanout(conv, x.shape, skip_zero_weights=True)).sum()
    dense = 2 * fanout(conv, (3, 9, 7)).sum()
    result = as_floats(metric.compute())
    assert result["effective_acs"] == int(effective) / 2
    assert result["dense"] == int(dense) / 2


# ----------------------------------------------------------------------------- batch sizes


def test_batch_size_defaults_to_dim_zero_of_the_first_input():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(4, 4))  # first input: 4 samples
    model(torch.ones(2, 4))
    metric.update()
    assert int(metric.samples) == 4
    assert float(metric.compute()["synops"]) == 6.0 * 6 / 4
    model(torch.ones(3, 4))
    metric.update()
    assert int(metric.samples) == 7
    other = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(other)
    other(torch.ones(3, 5, 4))  # (B, T, features): dim 0 again
    metric.update()
    assert int(metric.samples) == 3
    assert float(metric.compute()["synops"]) == 6.0 * 5


def test_batch_size_argument_overrides():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(4, 4))
    metric.update(batch_size=2)
    assert float(metric.compute()["synops"]) == 12.0
    model(torch.ones(4, 4))
    metric.update(batch_size=6)
    assert int(metric.samples) == 8
    assert float(metric.compute()["synops"]) == 6.0


def test_unbatched_conv_input_is_one_sample():
    conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)
    nn.init.ones_(conv.weight)
    metric = SynapticOperations(nn.Sequential(conv))
    conv(torch.ones(1, 5))  # (C, L)
    metric.update()
    assert int(metric.samples) == 1
    assert float(metric.compute()["synops"]) == 2 + 3 + 3 + 3 + 2


def test_linear_inputs_with_more_row_dims_later_in_the_window():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(2, 4))  # 2 rows x 6
    model(torch.tensor([[1.0, 0.0, 0.0, 0.0]]).expand(3, 5, 4))  # 15 rows x 2
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 21.0,
        "effective_acs": 21.0,
        "effective_macs": 0.0,
        "dense": 102.0,
    }


def test_linear_inputs_with_fewer_row_dims_later_in_the_window():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(1, 2, 4))  # 2 rows x 6
    model(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))  # 1 row x 2
    model(torch.tensor([0.0, 0.0, 1.0, 0.0]))  # unbatched: 1 row x 1
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 15.0,
        "effective_acs": 15.0,
        "effective_macs": 0.0,
        "dense": 48.0,
    }


def test_unbatched_then_batched_conv_input_in_one_window():
    conv = nn.Conv1d(1, 1, 3, bias=False)  # fanout on length 5: [1, 2, 3, 2, 1]
    nn.init.ones_(conv.weight)
    metric = SynapticOperations(nn.Sequential(conv))
    conv(torch.ones(1, 5))  # (C, L): 9
    conv(torch.tensor([[[1.0, 0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 1.0, 0.0, 0.0]]]))  # 1 + 3
    metric.update()
    assert int(metric.samples) == 1
    assert as_floats(metric.compute()) == {
        "synops": 13.0,
        "effective_acs": 13.0,
        "effective_macs": 0.0,
        "dense": 27.0,
    }


def test_an_empty_batch_counts_nothing():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(2, 4))
    model(torch.ones(0, 4))  # e.g. a detection head with no proposals
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 6.0,
        "effective_acs": 6.0,
        "effective_macs": 0.0,
        "dense": 12.0,
    }


def _split_run(model, data, split):
    metric = SynapticOperations(model)
    start = 0
    for size in split:
        reset_neurons(model)
        chunk = data[start : start + size]
        for t in range(chunk.shape[1]):
            model(chunk[:, t])
        metric.update()
        start += size
    result = as_floats(metric.compute())
    metric.detach()
    return result


@pytest.mark.parametrize("graded", [False, True])
def test_splitting_the_data_gives_the_same_per_sample_figures(graded):
    model = conv_snn(12)
    gen = torch.Generator().manual_seed(13)
    data = torch.randint(0, 3 if graded else 2, (12, 4, 2, 6, 6), generator=gen).float()
    reference = Reference(model)
    whole = _split_run(model, data, [12])
    reference.close()
    assert whole == pytest.approx(per_sample(reference.totals(), 12), rel=1e-14)
    assert whole["effective_acs"] > 0 and whole["effective_macs"] > 0
    for split in ([5, 7], [3, 3, 6], [1] * 12):
        assert _split_run(model, data, split) == whole


# ----------------------------------------------------------------------------- lifecycle


def test_reset_clears_the_state():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(2, 4))
    metric.update()
    metric.reset()
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert all(torch.isnan(value) for value in metric.compute().values())
    model(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    metric.update()
    assert as_floats(metric.compute()) == {
        "synops": 2.0,
        "effective_acs": 2.0,
        "effective_macs": 0.0,
        "dense": 12.0,
    }


def test_detach_removes_the_hooks():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Conv1d(1, 1, 1))
    metric = SynapticOperations(model)
    assert len(model[0]._forward_pre_hooks) == 1 and len(model[2]._forward_pre_hooks) == 1
    metric.detach()
    assert all(len(m._forward_pre_hooks) == 0 for m in model.modules())


def test_shared_hook_stays_until_the_last_metric_detaches():
    layer = linear_with(W_SPARSE)
    model = nn.Sequential(layer)
    first = SynapticOperations(model)
    second = SynapticOperations(model, skip_zero_weights=False)
    assert len(layer._forward_pre_hooks) == 1  # one hook, shared
    model(torch.ones(1, 4))
    first.update()
    second.update()
    assert float(first.compute()["synops"]) == 6.0  # not double counted
    assert float(second.compute()["synops"]) == 12.0
    first.detach()
    assert len(layer._forward_pre_hooks) == 1
    model(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    second.update()
    assert float(second.compute()["synops"]) == (12.0 + 3.0) / 2
    assert float(first.compute()["synops"]) == 6.0
    second.detach()
    assert len(layer._forward_pre_hooks) == 0


def test_context_manager_detaches_on_exit():
    model = nn.Sequential(linear_with(W_SPARSE))
    with SynapticOperations(model) as metric:
        assert isinstance(metric, SynapticOperations)
        model(torch.ones(1, 4))
        metric.update()
    assert len(model[0]._forward_pre_hooks) == 0
    assert float(metric.compute()["synops"]) == 6.0


def test_metric_does_not_own_the_model():
    model = gsc_snn()
    metric = SynapticOperations(model)
    assert list(metric.parameters()) == []
    assert not any("weight" in key for key in metric.state_dict())
    assert metric.model is model


def test_torchmetrics_forward_returns_the_batch_value_and_accumulates():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(2, 4))
    batch = as_floats(metric(batch_size=2))
    assert batch == {"synops": 6.0, "effective_acs": 6.0, "effective_macs": 0.0, "dense": 12.0}
    model(torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]))
    batch = as_floats(metric(batch_size=2))
    assert batch == {"synops": 0.5, "effective_acs": 0.0, "effective_macs": 0.5, "dense": 12.0}
    assert as_floats(metric.compute()) == {
        "synops": 3.25,
        "effective_acs": 3.0,
        "effective_macs": 0.25,
        "dense": 12.0,
    }


def test_weights_changed_in_place_are_followed():
    layer = linear_with(W_SPARSE)
    model = nn.Sequential(layer)
    metric = SynapticOperations(model)
    model(torch.ones(1, 4))  # 6
    with torch.no_grad():
        layer.weight[:, 3] = 0.0  # an optimizer-like in-place edit: column 3 dies
    model(torch.ones(1, 4))  # 3
    metric.update(batch_size=1)
    assert float(metric.compute()["synops"]) == 9.0


def test_weights_pruned_through_data_between_windows_are_followed():
    # `weight.data` edits do not bump `weight._version`; NeuroBench sees the new weights
    layer = linear_with(W_SPARSE)
    model = nn.Sequential(layer)
    metric = SynapticOperations(model)
    model(torch.ones(1, 4))
    metric.update()  # 6
    layer.weight.data[:, 3] = 0.0
    model(torch.ones(1, 4))
    metric.update()  # 3
    assert float(metric.compute()["synops"]) == (6.0 + 3.0) / 2


def test_first_forward_under_inference_mode_then_training_forward():
    # e.g. Lightning's sanity validation (inference mode) before the first training step
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    with torch.inference_mode():
        model(torch.ones(2, 4))
    metric.update()
    model(torch.ones(2, 4))
    metric.update()
    assert float(metric.compute()["synops"]) == 6.0


def test_counts_stay_exact_above_two_to_the_31():
    torch.manual_seed(14)
    layer = nn.Linear(1024, 1024, bias=False)
    with torch.no_grad():
        layer.weight[0, :7] = 0.0  # an odd number of zero weights
    model = nn.Sequential(layer)
    metric = SynapticOperations(model)
    batch, calls = 63, 35
    x = torch.ones(batch, 1024)
    with torch.no_grad():
        for _ in range(calls):
            model(x)
    metric.update(batch_size=1)
    effective = calls * batch * (1024 * 1024 - 7)
    dense = calls * batch * 1024 * 1024
    assert effective > 2**31 and dense > 2**31
    assert float(torch.tensor(effective, dtype=torch.float32)) != effective  # float32 would fail
    result = metric.compute()
    assert result["effective_acs"].dtype == torch.float64
    assert int(result["effective_acs"]) == effective
    assert int(result["dense"]) == dense
    assert int(result["synops"]) == effective


def test_window_longer_than_float32_exact_row_count():
    # pending counts are folded every 2**24 rows; here the last call of the window crosses
    layer = nn.Linear(1, 1, bias=False)
    nn.init.ones_(layer.weight)
    metric = SynapticOperations(nn.Sequential(layer))
    with torch.no_grad():
        layer(torch.ones(1, 1).expand(2**24 - 1, 1))
        layer(torch.ones(2, 1))
    metric.update(batch_size=1)
    result = metric.compute()
    assert int(result["effective_acs"]) == 2**24 + 1
    assert int(result["dense"]) == 2**24 + 1


# ----------------------------------------------------------------------------- bad input


def test_model_with_nothing_to_count_raises():
    with pytest.raises(ValueError, match="connection layer"):
        SynapticOperations(nn.Sequential(nn.ReLU(), snn.Leaky(beta=0.5)))


def test_model_must_be_a_module():
    with pytest.raises(TypeError, match="model"):
        SynapticOperations("not a model")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1])
def test_non_positive_batch_size_raises_value_error(bad):
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(1, 4))
    with pytest.raises(ValueError, match="batch_size"):
        metric.update(batch_size=bad)


@pytest.mark.parametrize("bad", [1.5, "3", True])
def test_non_integer_batch_size_raises_type_error(bad):
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.ones(1, 4))
    with pytest.raises(TypeError, match="batch_size"):
        metric.update(batch_size=bad)


def test_update_without_a_forward_raises():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    with pytest.raises(ValueError, match="forward"):
        metric.update()
    model(torch.ones(1, 4))
    metric.update()
    with pytest.raises(ValueError, match="forward"):
        metric.update(batch_size=3)  # nothing new since the last update


def test_compute_without_update_gives_nan_with_a_warning():
    metric = SynapticOperations(nn.Sequential(linear_with(W_SPARSE)))
    with pytest.warns(UserWarning, match="called before the ``update``"):
        result = metric.compute()
    assert set(result) == {"synops", "effective_acs", "effective_macs", "dense"}
    assert all(torch.isnan(value) for value in result.values())


def test_nan_input_raises_at_compute():
    model = nn.Sequential(linear_with(W_SPARSE))
    metric = SynapticOperations(model)
    model(torch.tensor([[1.0, float("nan"), 0.0, 0.0]]))
    metric.update()
    with pytest.raises(ValueError, match="NaN"):
        metric.compute()
    with pytest.raises(ValueError, match="NaN"):
        metric.compute_per_layer()

"""Metrics inside modern PyTorch execution: activation checkpointing, threads, NaN windows,
empty batches, keyword calls, attention and TorchScript parts. Expected values come from
an eager twin run without the feature, a fresh metric, or a brute force."""

from __future__ import annotations

import threading
import warnings

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

import snnmetrics as sm
from snnmetrics.connections import ProductRule, register_connection
from tests.workloads import (
    ALL_FACTORIES,
    assert_equal,
    build_net,
    feed,
    figures,
    fold,
    run_batch,
)

HOOKED = {
    "synops": sm.SynapticOperations,
    "neuron_ops": sm.NeuronOperations,
    "membrane": sm.MembraneUpdates,
    "sparsity": sm.ActivationSparsity,
    "firing": sm.FiringRate,
    "energy": sm.Energy,
}


def _results(metrics: dict[str, sm.HookedMetric]) -> dict[str, object]:
    return {name: figures(metric) for name, metric in metrics.items()}


# --- activation checkpointing ----------------------------------------------------------------


class StatePassing(nn.Module):
    """An SNN step whose neuron states go in and out (so a step can be checkpointed)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.lif1 = nn.Linear(20, 30), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(30, 5), snn.Leaky(beta=0.9)

    def forward(self, x: Tensor, mem1: Tensor, mem2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem1, mem2


def _checkpointed_run(use_reentrant: bool | None) -> dict[str, object]:
    net = StatePassing()
    metrics = {name: factory(net) for name, factory in HOOKED.items()}
    x = (torch.rand(8, 6, 20, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    x = (x * 1.5).requires_grad_()
    mem1, mem2, loss = torch.zeros(8, 30), torch.zeros(8, 5), torch.zeros(())
    for t in range(x.shape[1]):
        if use_reentrant is None:
            spikes, mem1, mem2 = net(x[:, t], mem1, mem2)
        else:
            spikes, mem1, mem2 = checkpoint(net, x[:, t], mem1, mem2, use_reentrant=use_reentrant)
        loss = loss + spikes.sum() + mem2.sum()
    loss.backward()  # recomputes every checkpointed step
    for metric in metrics.values():
        metric.update()
    return _results(metrics)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpointed_forwards_count_once(use_reentrant):
    assert_equal(_checkpointed_run(use_reentrant), _checkpointed_run(None))


# --- threads -------------------------------------------------------------------------------


class StatelessLIF(nn.Module):
    """A LIF step that keeps no state of its own: threads may run it at once."""

    def forward(self, x: Tensor, mem: Tensor) -> tuple[Tensor, Tensor]:
        mem = 0.9 * mem + x
        spikes = (mem > 1).float()
        return spikes, mem - spikes


sm.register_neuron(
    StatelessLIF,
    sm.NeuronRule(
        spikes=lambda module, output: output[0],
        membrane_before=lambda module, args, kwargs: args[1],
        membrane_after=lambda module, output: output[1],
        cost=4,
    ),
)


class ThreadSafeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.lif1 = nn.Linear(20, 64), StatelessLIF()
        self.fc2, self.lif2 = nn.Linear(64, 10), StatelessLIF()

    def forward(self, x: Tensor, mem1: Tensor, mem2: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        spikes, mem1 = self.lif1(self.fc1(x), mem1)
        spikes, mem2 = self.lif2(self.fc2(spikes), mem2)
        return spikes, mem1, mem2


def _job(net: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for batch in range(15):
            x = (torch.rand(4, 10, 20, generator=gen) < 0.3).float() * (1 + batch % 2)
            mem1, mem2 = torch.zeros(4, 64), torch.zeros(4, 10)
            for t in range(x.shape[1]):
                _, mem1, mem2 = net(x[:, t], mem1, mem2)


def _threads_run(threaded: bool) -> dict[str, object]:
    net = ThreadSafeNet()
    factories = {name: HOOKED[name] for name in ("synops", "neuron_ops", "sparsity", "firing")}
    metrics = {name: factory(net) for name, factory in factories.items()}
    if threaded:
        threads = [threading.Thread(target=_job, args=(net, seed)) for seed in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for seed in (1, 2, 3):
            _job(net, seed)
    for metric in metrics.values():
        metric.update(batch_size=3 * 15 * 4)
    return _results(metrics)


def test_threads_running_one_model_count_exactly():
    expected = _threads_run(threaded=False)
    for _ in range(3):
        assert_equal(_threads_run(threaded=True), expected)


# --- NaN windows -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synops", "energy", "membrane", "neuron_ops"])
def test_a_nan_window_does_not_poison_the_model(name):
    net = build_net()
    metric = HOOKED[name](net)
    with torch.no_grad():
        for _ in range(2):  # NaN input, then NaN membranes
            net(torch.full((2, 2, 8), float("nan")))
    metric.update()
    with pytest.raises(ValueError, match="NaN"):
        metric.compute()
    metric.reset()
    newcomer = HOOKED[name](net)
    feed(net, [metric, newcomer], [1, 2])
    expected = figures(_fresh(name, [1, 2]))
    assert_equal(figures(metric), expected, name)
    assert_equal(figures(newcomer), expected, name)


def _fresh(name: str, indices: list[int]) -> sm.HookedMetric:
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], indices)
    return metric


# --- empty batches ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ALL_FACTORIES))
def test_an_empty_batch_counts_nothing(name):
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    with torch.no_grad():
        net(torch.zeros(0, 2, 8))  # an empty last batch of a loader, say
    feed(net, [metric], [1, 2])
    assert_equal(figures(metric), figures(_fresh(name, [1, 2])), name)


@pytest.mark.parametrize("name", ["num_activations", "basis_set_size", "synops"])
def test_forward_of_an_empty_batch_does_not_crash(name):
    net = build_net()
    metric = ALL_FACTORIES[name](net)
    feed(net, [metric], [1])
    with torch.no_grad():
        net(torch.zeros(0, 2, 8))
    with pytest.raises(ValueError, match="no forward pass"):
        metric()  # nothing was counted: as after no forward at all
    feed(net, [metric], [2])
    assert_equal(figures(metric), figures(_fresh(name, [1, 2])), name)


# --- keyword calls ---------------------------------------------------------------------------


def test_keyword_calls_are_counted_like_positional_ones():
    def run(keyword: bool) -> dict[str, Tensor]:
        torch.manual_seed(4)
        net = nn.Sequential(nn.Linear(6, 5), nn.ReLU())
        conv = nn.Conv1d(1, 2, 3)
        holder = nn.ModuleDict({"net": net, "conv": conv})
        metrics = [sm.SynapticOperations(holder), sm.ActivationSparsity(holder)]
        x = (torch.rand(3, 6) < 0.5).float()
        with torch.no_grad():
            net[1](net[0](input=x) if keyword else net[0](x))
            conv(input=x[:, None]) if keyword else conv(x[:, None])
        for metric in metrics:
            metric.update()
        return {"synops": metrics[0].compute_per_layer(), "sparsity": metrics[1].compute()}

    assert_equal(run(keyword=True), run(keyword=False))


# --- attention -------------------------------------------------------------------------------


def _brute_product(a: Tensor, b: Tensor) -> float:
    """Pairs of nonzero operands of ``a @ b`` meeting on the contracted index, by loops."""
    total = 0
    a3, b3 = torch.broadcast_tensors(a[..., :, :, None], b[..., None, :, :])
    for index in torch.cartesian_prod(*[torch.arange(n) for n in a3.shape]).tolist():
        total += bool(a3[tuple(index)] != 0) and bool(b3[tuple(index)] != 0)
    return float(total)


def _brute_linear(x: Tensor, weight: Tensor) -> float:
    rows = x.reshape(-1, x.shape[-1])
    return sum(
        float(rows[r, j] != 0) * float(weight[o, j] != 0)
        for r in range(rows.shape[0])
        for o in range(weight.shape[0])
        for j in range(weight.shape[1])
    )


def _with_zeros(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.mul_((torch.rand(parameter.shape, generator=gen) < 0.7).float())


@pytest.mark.parametrize(
    ("batch_first", "separate_kv", "bias_kv", "mask"),
    [(True, False, False, None), (False, True, True, "bool"), (True, False, False, "float")],
)
def test_multihead_attention_equals_a_brute_force(batch_first, separate_kv, bias_kv, mask):
    torch.manual_seed(5)
    embed, heads, batch, length, source = 4, 2, 2, 3, 4
    kdim = 3 if separate_kv else None
    mha = nn.MultiheadAttention(
        embed, heads, batch_first=batch_first, kdim=kdim, vdim=kdim, add_bias_kv=bias_kv
    )
    _with_zeros(mha, seed=6)
    holder = nn.Sequential()
    holder.add_module("attn", mha)
    synops = sm.SynapticOperations(holder)
    assert synops.layer_names == ["attn"]  # out_proj is the layer's own, not a layer
    query = (torch.rand(length, batch, embed) < 0.5).float()
    memory = (torch.rand(source, batch, kdim or embed) < 0.5).float()
    attn_mask = {
        None: None,
        "bool": torch.rand(length, source) < 0.3,
        "float": torch.where(torch.rand(length, source) < 0.3, float("-inf"), 0.0),
    }[mask]
    with torch.no_grad():
        if batch_first:
            memory_first = memory.transpose(0, 1)
            mha(query.transpose(0, 1), memory_first, memory_first, attn_mask=attn_mask)
        else:
            mha(query, memory, memory, attn_mask=attn_mask)
    synops.update()

    # by hand: the four projections and, per head, queries x keys and weights x values
    if mha._qkv_same_embed_dim:
        w_q, w_k, w_v = mha.in_proj_weight.detach().chunk(3)
    else:
        w_q, w_k, w_v = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
    b_q, b_k, b_v = mha.in_proj_bias.detach().chunk(3)
    expected = sum(_brute_linear(x, w) for x, w in ((query, w_q), (memory, w_k), (memory, w_v)))
    with torch.no_grad():
        q, k, v = F.linear(query, w_q, b_q), F.linear(memory, w_k, b_k), F.linear(memory, w_v, b_v)
        if bias_kv:
            k = torch.cat([k, mha.bias_k.expand(1, batch, embed)])
            v = torch.cat([v, mha.bias_v.expand(1, batch, embed)])
        per_head = embed // heads
        q, k, v = (
            t.reshape(t.shape[0], batch * heads, per_head).transpose(0, 1) for t in (q, k, v)
        )
        scores = q @ k.transpose(1, 2) / per_head**0.5
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            full = torch.zeros(length, k.shape[1], dtype=torch.bool)
            full[:, :source] = attn_mask
            scores = scores.masked_fill(full, float("-inf"))
        elif attn_mask is not None:
            scores[:, :, :source] += attn_mask
        weights = scores.softmax(-1)
        merged = (weights @ v).transpose(0, 1).reshape(length * batch, embed)
    expected += _brute_product(q, k.transpose(1, 2)) + _brute_product(weights, v)
    expected += _brute_linear(merged, mha.out_proj.weight)
    assert float(synops.compute()["synops"]) * batch == expected


@pytest.mark.parametrize(
    ("attn_mask", "padding", "bias_kv", "zero_attn"),
    [
        (None, None, False, False),
        ("bool", None, True, True),
        ("float3d", "bool", False, True),
        ("causal", "float", True, False),
        (None, "bool", True, True),
    ],
)
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")
def test_recomputed_attention_weights_are_torchs(attn_mask, padding, bias_kv, zero_attn):
    """The count recomputes the attention weights from its own projections: they must be
    the weights torch's layer returns, for every kind of mask and appended key."""
    from snnmetrics.functional.attention import _attention_weights

    torch.manual_seed(9)
    embed, heads, batch, length, source = 8, 2, 3, 4, 5
    mha = nn.MultiheadAttention(embed, heads, add_bias_kv=bias_kv, add_zero_attn=zero_attn)
    mha.eval()
    query, memory = torch.randn(length, batch, embed), torch.randn(source, batch, embed)
    masks = {
        None: None,
        "bool": torch.rand(length, source) < 0.3,
        "float3d": torch.where(torch.rand(batch * heads, length, source) < 0.3, -1e9, 0.5),
        "causal": torch.ones(length, source, dtype=torch.bool).triu(1),
    }
    paddings = {
        None: None,
        "bool": torch.tensor([[False] * 4 + [True]] * batch),
        "float": torch.where(torch.rand(batch, source) < 0.3, float("-inf"), 0.0),
    }
    options = {"attn_mask": masks[attn_mask], "key_padding_mask": paddings[padding]}
    with torch.no_grad():
        _, expected = mha(query, memory, memory, need_weights=True,
                          average_attn_weights=False, **options)
        w_q, w_k, _ = mha.in_proj_weight.chunk(3)
        b_q, b_k, _ = mha.in_proj_bias.chunk(3)
        q, k = F.linear(query, w_q, b_q), F.linear(memory, w_k, b_k)
        if bias_kv:
            k = torch.cat([k, mha.bias_k.expand(1, batch, embed)])
        per_head = embed // heads
        q, k = (t.reshape(t.shape[0], batch * heads, per_head).transpose(0, 1) for t in (q, k))
        if zero_attn:
            k = torch.cat([k, k.new_zeros(batch * heads, 1, per_head)], dim=1)
        weights = _attention_weights(q * (1.0 / per_head) ** 0.5, k, mha, batch, options)
    assert torch.equal(weights.reshape(expected.shape), expected)


class SpikingSelfAttention(nn.Module):
    """Spikformer's spiking self-attention: spiking Q, K, V and products written with @."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = (
            snn.Leaky(beta=0.5, init_hidden=True, threshold=0.3) for _ in range(3)
        )
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape

        def split(spikes: Tensor) -> Tensor:
            return spikes.reshape(batch, tokens, self.heads, -1).transpose(1, 2)

        q = split(self.q_lif(self.q(x)))
        k = split(self.k_lif(self.k(x)))
        v = split(self.v_lif(self.v(x)))
        attention = (q @ k.transpose(-2, -1)) * 0.125
        return self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, dim))


register_connection(SpikingSelfAttention, ProductRule())


def test_spiking_self_attention_written_with_matmul_equals_a_brute_force():
    torch.manual_seed(8)
    net = nn.Sequential(SpikingSelfAttention(), nn.ReLU(), SpikingSelfAttention())
    synops = sm.SynapticOperations(net)
    parts = ("", ".q", ".k", ".v", ".proj")
    assert synops.layer_names == [f"{block}{part}" for block in ("0", "2") for part in parts]
    recorded: dict[str, Tensor] = {}
    for name in ("0", "2"):
        block = net.get_submodule(name)
        for part in ("q_lif", "k_lif", "v_lif"):
            getattr(block, part).register_forward_hook(
                lambda module, args, out, key=f"{name}.{part}": recorded.__setitem__(key, out)
            )
    x = (torch.rand(3, 5, 8) < 0.5).float()
    with torch.no_grad():
        net(x)
    synops.update()
    per_layer = synops.compute_per_layer()
    for name in ("0", "2"):
        q, k, v = (
            recorded[f"{name}.{part}"].reshape(3, 5, 2, -1).transpose(1, 2)
            for part in ("q_lif", "k_lif", "v_lif")
        )
        attention = (q @ k.transpose(-2, -1)) * 0.125
        spikes_only = _brute_product(q, k.transpose(-2, -1))  # binary operands: ACs
        graded = _brute_product(attention, v)  # attention counts are not: MACs
        assert float(per_layer[name]["effective_acs"]) * 3 == spikes_only
        assert float(per_layer[name]["effective_macs"]) * 3 == graded
        assert float(per_layer[name]["dense"]) * 3 == 2 * (3 * 2 * 5 * 4 * 5)


def test_product_modules_nested_are_counted_once():
    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = SpikingSelfAttention()

        def forward(self, x: Tensor) -> Tensor:
            return self.inner(x) @ torch.ones(8, 8)  # a product of the outer module's own

    register_connection(Outer, ProductRule())
    torch.manual_seed(9)
    outer = Outer()
    alone = SpikingSelfAttention()
    alone.load_state_dict(outer.inner.state_dict())
    x = (torch.rand(2, 5, 8) < 0.5).float()
    both, single = sm.SynapticOperations(outer), sm.SynapticOperations(alone)
    with torch.no_grad():
        outer(x)
        inner_out = alone(x)  # what outer.inner gave: the same weights, fresh neurons
    both.update()
    single.update()
    per_layer = both.compute_per_layer()
    assert_equal(per_layer["inner"], single.compute_per_layer()[""])
    assert float(per_layer[""]["synops"]) * 2 == _brute_product(inner_out, torch.ones(8, 8))


# --- parts hooks cannot see ---------------------------------------------------------------------


def test_scripted_submodules_are_named_in_a_warning():
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen = nn.Linear(4, 4)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.script is deprecated
                self.hidden = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))

        def forward(self, x: Tensor) -> Tensor:
            return self.hidden(self.seen(x))

    model = Model()
    with pytest.warns(UserWarning, match="TorchScript module.*hidden: their layers are not"):
        synops = sm.SynapticOperations(model)
    assert synops.layer_names == ["seen"]


# --- weights edited through .data ----------------------------------------------------------


def test_weight_edits_through_data_are_followed_from_the_next_window():
    torch.manual_seed(2)
    linear = nn.Linear(4, 3, bias=False)
    net = nn.Sequential(linear)
    synops = sm.SynapticOperations(net)
    x = torch.ones(2, 4)
    net(x)
    synops.update()
    linear.weight.data[:, 0] = 0.0  # autograd does not see this edit
    net(x)
    synops.update()
    # by hand: 2 samples x 12 weights, then 2 samples x 9 nonzero weights, over 4 samples
    assert float(synops.compute()["synops"]) == (2 * 12 + 2 * 9) / 4


def test_a_torch_function_mode_around_the_model_sees_only_the_model():
    """The hooks' counting runs outside torch function modes: a mode of the user's (or a
    ProductRule's) sees the same operations with the metrics attached as without."""
    from torch.overrides import TorchFunctionMode

    class Seen(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.calls.append(getattr(func, "__name__", str(func)))
            return func(*args, **(kwargs or {}))

    def seen(hooked: bool) -> list[str]:
        net = build_net()
        metrics = [factory(net) for factory in ALL_FACTORIES.values()] if hooked else []
        mode = Seen()
        with torch.no_grad(), mode:
            run_batch(net, 0)
        for metric in metrics:
            fold(metric, 0)  # (the hooks ran: an update without calls raises)
        return mode.calls

    plain = seen(hooked=False)
    assert plain and seen(hooked=True) == plain


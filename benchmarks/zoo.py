"""The overhead zoo: cost of the five hooked metrics on common SNN architectures, eager, compiled.

For every model of the zoo, copies of one network run the same Poisson spike batches:

* ``plain``: never hooked;
* ``ours``: snnmetrics' five hooked metrics (SynapticOperations, NeuronOperations,
  MembraneUpdates, ActivationSparsity, FiringRate), reset at the start of each timed epoch
  and ``update(batch_size=B)`` after every batch;
* ``floor``: plain forward hooks, written here without any snnmetrics code, that do only
  the minimal tensor reads the five metrics need: the nonzero count of every input element
  of each connection layer (summed over the rows: batch, and time for multi-step layers),
  each neuron's spike sum, and the number of neurons whose membrane changed against the
  membrane before the call. No per-window work, no AC/MAC check, no fanout;
* ``neurobench`` (eager only, where NeuroBench 2.3.0 runs the model): its
  SynapticOperations, ActivationSparsity and MembraneUpdates driven the way
  ``Benchmark.run`` drives them.

Eager and ``torch.compile`` (inductor) are timed separately: the compiled group compiles
the plain twin, ``ours`` (metrics attached before compiling, as a user would) and the
floor. Each twin gets its own subclass of the model's class: dynamo skips guards on
module hooks by default, so without it a twin of the same class would reuse the graph
compiled for another twin (a hooked twin would run the plain graph and count nothing).

Timing as ``overhead.py``: one thread, CPU time of the process (``time.process_time``),
``torch.no_grad()``, hooks attached and warmed up by one batch before timing (a compiled
twin first runs one whole epoch right after compiling: the compile and the recompiles of a
user's first epoch), the minimum over repeats whose order rotates (``overhead.compare``).

Also reported: graph breaks of one steady-state call under ``torch._dynamo.explain``
(after one eager batch) with their reasons, the functions for which dynamo hit its
recompile limit, and whether the compiled metrics' figures equal the eager ones, after
the first (compiling) epoch and after the last timed one. A configuration that crashes
is recorded with its error instead of stopping the run.

Run: ``python benchmarks/zoo.py [--models conv3x3,mlp] [--no-eager] [--no-compile]
[--repeats 15] [--compile-repeats 3] [--json PATH] [--markdown PATH]``; by default the
results go to ``benchmarks/results/zoo.json`` and ``zoo.md``. ``--profile MODEL``
profiles the hooked eager model instead (torch.profiler against the plain twin, cProfile).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import cProfile
import io
import json
import logging
import math
import platform
import pstats
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import snntorch as snn
import torch
from overhead import METRICS, compare  # type: ignore[import-not-found]
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

import snnmetrics as sm
from snnmetrics.examples import conv_snn, mlp_snn, poisson_spikes, reset_neurons, run_steps

HERE = Path(__file__).resolve().parent
Epoch = Callable[[list[Tensor]], None]
Runner = Callable[[nn.Module], tuple[Epoch, Callable[[], None]]]

# ------------------------------------------------------------------------------- the models


def _scaled(net: nn.Module, gain: float, first: float | None = None) -> nn.Module:
    """Scale the default initialisation so that sparse input drives every layer: the
    weights by ``gain``, those of the first connection layer by ``first`` if given."""
    layers = [module for module in net.modules()
              if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    with torch.no_grad():
        for index, module in enumerate(layers):
            module.weight.mul_(first if index == 0 and first is not None else gain)
    return net


def _leaky(beta: float = 0.9, **kwargs: Any) -> snn.Leaky:
    return snn.Leaky(beta=beta, init_hidden=True, **kwargs)


def conv3x3_snn() -> nn.Module:
    """3 convs 3x3 on 2x32x32 frames, each Leaky before its MaxPool (neurons at full
    resolution: 16x32x32, 32x16x16, 64x8x8), then a Linear read-out."""
    net = nn.Sequential(
        nn.Conv2d(2, 16, 3, padding=1), _leaky(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), _leaky(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), _leaky(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 11), _leaky(),
    )
    return _scaled(net, 3.0, first=5.0)


class SEWBlock(nn.Module):
    """Spike-element-wise residual block: conv-BN-Leaky twice, identity added (SEW ADD)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.lif1 = _leaky()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.lif2 = _leaky()

    def forward(self, x: Tensor) -> Tensor:
        out = self.lif1(self.bn1(self.conv1(x)))
        return self.lif2(self.bn2(self.conv2(out))) + x


class SEWResNet(nn.Module):
    """A stem (conv-BN-Leaky, 2x32x32 -> 32x16x16), two SEW blocks at 32x16x16, a read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(2, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), _leaky(),
            nn.MaxPool2d(2),
        )
        self.blocks = nn.Sequential(SEWBlock(32), SEWBlock(32))
        self.head = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(32 * 4 * 4, 11),
                                  _leaky())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))


def sew_resnet() -> nn.Module:
    return _scaled(SEWResNet(), 2.0, first=4.0)


def conv1d_audio_snn() -> nn.Module:
    """Audio: 16 mel bands x 128 frames per step, 2 x Conv1d k5 over the frames, Leaky."""
    net = nn.Sequential(
        nn.Conv1d(16, 32, 5, padding=2), _leaky(),
        nn.Conv1d(32, 64, 5, padding=2), _leaky(),
        nn.MaxPool1d(4), nn.Flatten(), nn.Linear(64 * 32, 35), _leaky(),
    )
    return _scaled(net, 3.0)


class SpikingSelfAttention(nn.Module):
    """Spikformer's SSA: spiking Q, K, V (Linear + Leaky), ``Q Kᵀ V * scale`` written with
    ``@`` (no softmax), a Leaky on the result, a Linear + Leaky projection."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, 0.125
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = _leaky(), _leaky(), _leaky()
        self.attn_lif = _leaky(threshold=0.5)
        self.proj = nn.Linear(dim, dim)
        self.proj_lif = _leaky()

    def _heads(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        q = self._heads(self.q_lif(self.q(x)))
        k = self._heads(self.k_lif(self.k(x)))
        v = self._heads(self.v_lif(self.v(x)))
        y = (q @ k.transpose(-2, -1)) @ v * self.scale
        y = y.transpose(1, 2).reshape(x.shape)
        return self.proj_lif(self.proj(self.attn_lif(y)))


# the products of activations in its forward count as synaptic operations (0.2.0; the
# baseline library, 0.1.0, has no ProductRule and leaves them out)
if hasattr(sm, "ProductRule"):
    sm.register_connection(SpikingSelfAttention, sm.ProductRule())


class MHAAttention(nn.Module):
    """``nn.MultiheadAttention`` on the spikes (its own projections), then a Leaky."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn_lif = _leaky()

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.mha(x, x, x, need_weights=False)
        return self.attn_lif(y)


class SpikformerBlock(nn.Module):
    """Token embedding (Linear + Leaky), one attention block and one MLP block with
    residual adds, a mean over tokens and a Linear + Leaky read-out. Input ``[B, N, F]``."""

    def __init__(self, attention: str, features: int = 32, dim: int = 128, heads: int = 4,
                 classes: int = 10) -> None:
        super().__init__()
        self.embed, self.embed_lif = nn.Linear(features, dim), _leaky()
        self.attn = (SpikingSelfAttention if attention == "ssa" else MHAAttention)(dim, heads)
        self.fc1, self.fc1_lif = nn.Linear(dim, 4 * dim), _leaky()
        self.fc2, self.fc2_lif = nn.Linear(4 * dim, dim), _leaky()
        self.head, self.head_lif = nn.Linear(dim, classes), _leaky()

    def forward(self, x: Tensor) -> Tensor:
        x = self.embed_lif(self.embed(x))
        x = x + self.attn(x)
        x = x + self.fc2_lif(self.fc2(self.fc1_lif(self.fc1(x))))
        return self.head_lif(self.head(x.mean(1)))


def spikformer_ssa() -> nn.Module:
    net = _scaled(SpikformerBlock("ssa"), 2.0, first=4.0)
    with torch.no_grad():
        for layer in (net.attn.q, net.attn.k, net.attn.v):
            layer.weight.mul_(2.0)
    return net


def spikformer_mha() -> nn.Module:
    net = _scaled(SpikformerBlock("mha"), 2.0, first=4.0)
    with torch.no_grad():
        net.attn.mha.in_proj_weight.mul_(2.0)
        net.attn.mha.out_proj.weight.mul_(4.0)
    return net


def spikingjelly_conv_snn() -> nn.Module:
    """spikingjelly multi-step (``step_mode='m'``): conv-BN-LIF-MaxPool twice at 32 and 64
    channels, a Linear + LIF read-out; LIF neurons keep every step's membrane
    (``store_v_seq=True``) so that membrane updates are exact. Input ``[T, B, 2, 32, 32]``."""
    from spikingjelly.activation_based import functional, layer, neuron

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, store_v_seq=True)

    net = nn.Sequential(
        layer.Conv2d(2, 32, 3, padding=1, bias=False), layer.BatchNorm2d(32), lif(),
        layer.MaxPool2d(2),
        layer.Conv2d(32, 64, 3, padding=1, bias=False), layer.BatchNorm2d(64), lif(),
        layer.MaxPool2d(2),
        layer.Flatten(), layer.Linear(64 * 8 * 8, 11), lif(),
    )
    functional.set_step_mode(net, "m")
    return _scaled(net, 8.0)


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: how to build it, the shape of one batch, and how a batch is run.

    ``shape`` is batch first, time second (``[B, T, ...]``, stepped one call per step)
    unless ``time_first`` (``[T, B, ...]``, one multi-step call per batch).
    """

    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    about: str
    time_first: bool = False

    @property
    def batch_size(self) -> int:
        return self.shape[1] if self.time_first else self.shape[0]

    def run(self, net: nn.Module, x: Tensor) -> None:
        """One batch: reset the neurons, run every step."""
        if self.time_first:
            from spikingjelly.activation_based import functional

            functional.reset_net(net)
            net(x)
        else:
            run_steps(net, x)

    def first_call(self, net: nn.Module, x: Tensor) -> Tensor:
        """Reset the neurons and return the input of a batch's first call."""
        if self.time_first:
            from spikingjelly.activation_based import functional

            functional.reset_net(net)
            return x
        reset_neurons(net)
        return x[:, 0]

    def batch_first(self, x: Tensor) -> Tensor:
        return x.transpose(0, 1) if self.time_first else x


ZOO: dict[str, ZooModel] = {
    "conv": ZooModel(conv_snn, (16, 25, 2, 32, 32),
                     "examples.conv_snn: 3 convs 5x5, MaxPool before each Leaky"),
    "mlp": ZooModel(mlp_snn, (32, 100, 20), "GSC MLP 20-256-256-256-35 (examples.mlp_snn)"),
    "conv3x3": ZooModel(conv3x3_snn, (16, 20, 2, 32, 32),
                        "3 convs 3x3, Leaky before MaxPool (neurons at full resolution)"),
    "sew_resnet": ZooModel(sew_resnet, (16, 12, 2, 32, 32),
                           "SEW-ResNet: stem + 2 blocks (conv-BN-Leaky x2, identity add)"),
    "conv1d": ZooModel(conv1d_audio_snn, (32, 25, 16, 128),
                       "audio: 2 x Conv1d k5 over 128 frames, Leaky"),
    "spikformer": ZooModel(spikformer_ssa, (8, 16, 64, 32),
                           "Spikformer block, spiking Q/K/V, attention written with @"),
    "spikformer_mha": ZooModel(spikformer_mha, (8, 16, 64, 32),
                               "the same block with nn.MultiheadAttention"),
    "spikingjelly": ZooModel(spikingjelly_conv_snn, (12, 12, 2, 32, 32),
                             "spikingjelly multi-step conv SNN (LIFNode, store_v_seq)",
                             time_first=True),
}


# ------------------------------------------------------------------------------- the floor


def _spikingjelly_node() -> type | None:
    try:
        from spikingjelly.activation_based.neuron import BaseNode
    except ImportError:
        return None
    return BaseNode


def _nonzero(x: Tensor) -> Tensor:
    """1.0 where ``x`` is nonzero, else 0.0 (exact for finite values).

    The fastest exact form found on this CPU: summing ``x != 0`` converts the bool tensor to
    int64 first and took 10x as long on a 4.7M-element input (36.5 ms against 3.9 ms);
    ``count_nonzero`` over dims 30.9 ms.
    """
    return x.abs().clamp_(max=1).ceil_()


class _Sums:
    """One layer's accumulators (a plain object: dynamo traces its attribute writes, not
    those of a ``_Sums``)."""

    def __init__(self, **slots: Any) -> None:
        self.__dict__.update(slots)


class Floor:
    """Plain hooks doing only the minimal tensor reads the five metrics need.

    Every accumulator is made by the first (eager) call and only added to in place after
    that, so that the hooks compile into the model's graph.
    """

    def __init__(self, net: nn.Module) -> None:
        self.handles: list[Any] = []
        self.states: list[_Sums] = []
        node = _spikingjelly_node()
        inside_attention: set[int] = set()
        for module in net.modules():
            if isinstance(module, nn.MultiheadAttention):
                inside_attention.update(id(child) for child in module.modules())
                self._attention(module)
            elif id(module) in inside_attention:
                continue  # out_proj is called functionally: its hooks never run
            elif isinstance(module, SpikingSelfAttention):
                self._products(module)
            elif isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                self._connection(module)
            elif isinstance(module, snn.SpikingNeuron):
                self._neuron(module, "mem", multi_step=False)
            elif node is not None and isinstance(module, node):
                self._neuron(module, "v", multi_step=True)

    @staticmethod
    def _add(state: _Sums, key: str, value: Tensor) -> None:
        total = getattr(state, key)
        if total is None:
            # float64 (exact counts), at least 1-d: torch 2.13's inductor and aot_eager
            # silently drop an in-place add into a 0-d float64 tensor that the compiled
            # code closes over (the total stays 0; 0-d float32 or int64 and 1-d float64
            # are kept)
            setattr(state, key, value.double().reshape(value.shape or (1,)))
        else:
            total.add_(value)

    def _state(self, **slots: Any) -> _Sums:
        state = _Sums(**slots)
        self.states.append(state)
        return state

    def _connection(self, module: nn.Module) -> None:
        feature_dims = 1 if isinstance(module, nn.Linear) else module.weight.ndim - 1
        state = self._state(nonzero=None)

        def hook(layer: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0]
            self._add(state, "nonzero", _nonzero(x).sum(tuple(range(x.ndim - feature_dims))))

        self.handles.append(module.register_forward_pre_hook(hook))

    def _attention(self, module: nn.Module) -> None:
        state = self._state(nonzero=None)

        def hook(layer: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            # the q/k/v input projections' reads; one read where they share one tensor
            seen: list[Tensor] = []
            for x in args[:3]:
                if not any(x is other for other in seen):
                    seen.append(x)
                    self._add(state, "nonzero", _nonzero(x).sum(tuple(range(x.ndim - 1))))

        self.handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def _products(self, module: nn.Module) -> None:
        """The reads of the products of activations in the module's forward (``@``): the
        nonzeros of each column of the left operand times those of each row of the right,
        watched by a torch function mode between the module's pre- and post-hook."""
        state = self._state(pairs=None)
        add = self._add
        entered: list[TorchFunctionMode] = []

        class Products(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                if func is Tensor.matmul or func is torch.matmul:
                    pairs = _nonzero(args[0]).sum(-2) * _nonzero(args[1]).sum(-1)
                    add(state, "pairs", pairs.sum())
                return out

        def pre(layer: nn.Module, args: tuple[Any, ...]) -> None:
            mode = Products()
            mode.__enter__()
            entered.append(mode)

        def post(layer: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            entered.pop().__exit__(None, None, None)

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

    def _neuron(self, module: nn.Module, membrane: str, multi_step: bool) -> None:
        state = self._state(before=None, spikes=None, changed=None)

        def pre(layer: nn.Module, args: tuple[Any, ...]) -> None:
            state.before = getattr(layer, membrane)

        def post(layer: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            spikes = output[0] if isinstance(output, tuple) else output
            before = state.before
            if multi_step:  # [T, B, ...]: every step's membrane is in v_seq
                v_seq = layer.v_seq
                self._add(state, "spikes", spikes.sum((0, 1)))
                changed = _nonzero(v_seq[1:] - v_seq[:-1]).sum() + _nonzero(v_seq[0] - before).sum()
            else:
                after = getattr(layer, membrane)
                self._add(state, "spikes", spikes.sum(0))
                if isinstance(before, Tensor) and before.shape == after.shape:
                    changed = _nonzero(after - before).sum()
                else:  # a fresh state: every neuron updates
                    changed = torch.tensor(float(after.numel()))
            self._add(state, "changed", changed)

        self.handles.append(module.register_forward_pre_hook(pre))
        self.handles.append(module.register_forward_hook(post))

    def _totals(self) -> Iterator[tuple[int, str, Tensor]]:
        for index, state in enumerate(self.states):
            for key, value in vars(state).items():
                if key != "before" and isinstance(value, Tensor):
                    yield index, key, value

    def zero(self) -> None:
        for _, _, total in self._totals():
            total.zero_()

    def figures(self) -> dict[str, Any]:
        """The reads since the last ``zero()``: what the model computed, hooked or not."""
        return {f"{index}.{key}": _figures(total) for index, key, total in self._totals()}

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


# ------------------------------------------------------------------------------- the configurations


@dataclass
class Outcome:
    """What the configurations of one timed group left behind."""

    errors: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)


def _error(exc: BaseException) -> str:
    """The exception's type and first two non-empty lines (the second names the cause of
    a ``BackendCompilerFailed``)."""
    lines = [line.strip() for line in f"{type(exc).__name__}: {exc}".splitlines()]
    return " ".join([line for line in lines if line][:2])[:300]


def _twin(net: nn.Module, tag: str) -> nn.Module:
    """``net`` as an instance of its own subclass (a separate dynamo cache entry)."""
    cls = type(net)
    net.__class__ = type(f"{cls.__name__}_{tag}", (cls,), {})
    return net


def _as_twin(tag: str, make: Runner) -> Runner:
    return lambda net: make(_twin(net, tag))


def _guarded(key: str, make: Runner, outcome: Outcome) -> Runner:
    """``make`` whose failures (build, compile, a timed epoch, close) are recorded in
    ``outcome.errors[key]`` instead of raised; a failed configuration then does nothing."""

    def noop(batches: list[Tensor]) -> None:
        return None

    def guarded_make(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
        try:
            epoch, close = make(net)
        except Exception as exc:
            outcome.errors[key] = _error(exc)
            traceback.print_exc()
            return noop, lambda: None

        def guarded_epoch(batches: list[Tensor]) -> None:
            if key in outcome.errors:
                return
            try:
                epoch(batches)
            except Exception as exc:
                outcome.errors[key] = _error(exc)
                traceback.print_exc()

        def guarded_close() -> None:
            try:
                close()
            except Exception as exc:
                outcome.errors.setdefault(key, _error(exc))
                traceback.print_exc()

        return guarded_epoch, guarded_close

    return guarded_make


# ``warm``: None in eager mode; under compile, the batches of one full epoch run right
# after compiling (the compile and any recompiles a user's first epoch would see)


def _maybe_compile(net: nn.Module, warm: list[Tensor] | None) -> nn.Module:
    return net if warm is None else torch.compile(net)  # type: ignore[return-value]


def _warm_up(epoch: Epoch, warm: list[Tensor] | None) -> None:
    if warm is not None:
        with torch.no_grad():
            epoch(warm)


def _plain(model: ZooModel, warm: list[Tensor] | None) -> Runner:
    def make(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
        run = _maybe_compile(net, warm)

        def epoch(batches: list[Tensor]) -> None:
            for x in batches:
                model.run(run, x)

        _warm_up(epoch, warm)
        return epoch, lambda: None

    return make


def _figures(value: Any) -> Any:
    """A metric result as plain Python (lists of floats) for JSON and comparison."""
    if isinstance(value, dict):
        return {str(key): _figures(item) for key, item in value.items()}
    if isinstance(value, Tensor):
        return value.detach().double().tolist()
    return value


def _ours(model: ZooModel, warm: list[Tensor] | None, outcome: Outcome) -> Runner:
    """Figures go to ``outcome.figures``: ``ours`` after the last timed epoch, and under
    compile ``ours_first`` after the first, compiling epoch."""

    def make(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
        metrics = [make_metric(net) for make_metric in METRICS]
        run = _maybe_compile(net, warm)

        def epoch(batches: list[Tensor]) -> None:
            for metric in metrics:
                metric.reset()  # compute() after the last epoch gives one epoch's figures
            for x in batches:
                model.run(run, x)
                for metric in metrics:
                    metric.update(batch_size=model.batch_size)

        def figures() -> dict[str, Any]:
            return {type(metric).__name__: _figures(metric.compute()) for metric in metrics}

        def close() -> None:
            try:
                outcome.figures["ours"] = figures()
            finally:
                for metric in metrics:
                    metric.detach()

        if warm is not None:
            _warm_up(epoch, warm)
            outcome.figures["ours_first"] = figures()
        return epoch, close

    return make


def _floor(model: ZooModel, warm: list[Tensor] | None, example: Tensor,
           outcome: Outcome | None = None) -> Runner:
    """The floor; its reads of the last timed epoch go to ``outcome.figures["floor"]``."""

    def make(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
        floor = Floor(net)
        with torch.no_grad():
            model.run(net, example)  # eager: the accumulators exist before any compile
        run = _maybe_compile(net, warm)

        def epoch(batches: list[Tensor]) -> None:
            floor.zero()
            for x in batches:
                model.run(run, x)

        def close() -> None:
            if outcome is not None:
                outcome.figures["floor"] = floor.figures()
            floor.close()

        _warm_up(epoch, warm)
        return epoch, close

    return make


def _neurobench(model: ZooModel, outcome: Outcome) -> Runner:
    def make(net: nn.Module) -> tuple[Epoch, Callable[[], None]]:
        from neurobench.metrics.workload import (
            ActivationSparsity,
            MembraneUpdates,
            SynapticOperations,
        )
        from neurobench.models.neurobench_model import NeuroBenchModel

        class Wrapped(NeuroBenchModel):  # type: ignore[misc]
            """The zoo model's own batch loop, hooked the NeuroBench way."""

            def __init__(self) -> None:
                super().__init__()
                self.add_activation_module(snn.SpikingNeuron)
                node = _spikingjelly_node()
                if node is not None:
                    self.add_activation_module(node)

            def __call__(self, batch: Tensor) -> None:
                model.run(net, batch)

            def __net__(self) -> nn.Module:
                return net

        wrapped = Wrapped()
        wrapped.register_hooks()
        metrics = [SynapticOperations(), ActivationSparsity(), MembraneUpdates()]
        values: dict[str, Any] = {}

        def epoch(batches: list[Tensor]) -> None:
            for metric in metrics:
                if hasattr(metric, "reset"):  # the accumulated ones
                    metric.reset()
            for x in batches:
                preds = wrapped(x)
                for metric in metrics:
                    values[type(metric).__name__] = metric(
                        wrapped, preds, (model.batch_first(x), None))
                wrapped.reset_hooks()

        def close() -> None:
            outcome.figures["neurobench"] = _figures(values)
            wrapped.close_hooks()

        return epoch, close

    return make


def _have_neurobench() -> bool:
    try:
        import neurobench  # noqa: F401
    except ImportError:
        return False
    return True


def _time_group(base: nn.Module, runners: dict[str, Runner], batches: list[Tensor],
                repeats: int, outcome: Outcome) -> dict[str, float | None]:
    guarded = {key: _guarded(key, make, outcome) for key, make in runners.items()}
    best = compare(guarded, base, batches, repeats)
    return {key: (None if key in outcome.errors else seconds) for key, seconds in best.items()}


# ------------------------------------------------------------------------------- graph breaks


def _graph_breaks(model: ZooModel, base: nn.Module, make: Runner, x: Tensor) -> dict[str, Any]:
    """Graphs and breaks of one steady-state call (after one eager batch) under dynamo."""
    net = copy.deepcopy(base).eval()
    try:
        _, close = make(net)
    except Exception as exc:
        return {"error": _error(exc)}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # close() computes metrics never updated here
            model.run(net, x)
            breaks = torch._dynamo.utils.counters["graph_break"]
            breaks.clear()
            explained = torch._dynamo.explain(net)(model.first_call(net, x))
        return {"graphs": explained.graph_count, "breaks": explained.graph_break_count,
                "reasons": {reason.splitlines()[0][:300]: count
                            for reason, count in breaks.items()}}
    except Exception as exc:
        return {"error": _error(exc)}
    finally:
        with contextlib.suppress(Exception):
            close()


class _RecompileLimits(logging.Handler):
    """Collects the functions for which dynamo hit its recompile limit (and from then on
    runs them uncompiled), from dynamo's own warning."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.functions: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "hit config." in message and "function:" in message:
            self.functions.append(message.split("function:")[1].splitlines()[0].strip())

    @contextlib.contextmanager
    def watching(self) -> Iterator[_RecompileLimits]:
        logger = logging.getLogger("torch._dynamo.convert_frame")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)


# ------------------------------------------------------------------------------- comparing figures


def _mismatches(eager: Any, compiled: Any, path: str = "") -> list[str]:
    """Where two results (as ``_figures`` gives them) differ; NaN equals NaN."""
    if isinstance(eager, dict) and isinstance(compiled, dict):
        found: list[str] = []
        for key in sorted(set(eager) | set(compiled)):
            if key not in eager or key not in compiled:
                found.append(f"{path}{key}: only in {'eager' if key in eager else 'compiled'}")
            else:
                found += _mismatches(eager[key], compiled[key], f"{path}{key}.")
        return found
    if _same(eager, compiled):
        return []
    return [f"{path.rstrip('.')}: eager {_short(eager)} vs compiled {_short(compiled)}"]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _short(value: Any) -> str:
    if isinstance(value, list):
        flat = torch.tensor(value, dtype=torch.float64).flatten()
        return f"[{flat.numel()} values, sum {flat.nansum().item():.6g}]"
    return f"{value:.8g}" if isinstance(value, float) else repr(value)


# ------------------------------------------------------------------------------- the run


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def run_model(name: str, model: ZooModel, repeats: int, compile_repeats: int, n_batches: int,
              eager: bool, compiled: bool) -> dict[str, Any]:
    torch.manual_seed(0)
    base = model.build().eval()
    gen = torch.Generator().manual_seed(1)
    batches = [poisson_spikes(model.shape, 0.1, gen) for _ in range(n_batches)]
    entry: dict[str, Any] = {"about": model.about, "input_shape": list(model.shape),
                             "batches": n_batches}
    started = time.perf_counter()
    if eager:
        outcome = Outcome()
        runners: dict[str, Runner] = {
            "plain": _plain(model, None),
            "ours": _ours(model, None, outcome),
            "floor": _floor(model, None, batches[0], outcome),
        }
        if _have_neurobench():
            runners["neurobench"] = _neurobench(model, outcome)
        seconds = _time_group(base, runners, batches, repeats, outcome)
        entry["eager"] = {
            "seconds": seconds,
            "ours_vs_plain": _ratio(seconds["ours"], seconds["plain"]),
            "floor_vs_plain": _ratio(seconds["floor"], seconds["plain"]),
            "ours_vs_floor": _ratio(seconds["ours"], seconds["floor"]),
            "neurobench_vs_ours": _ratio(seconds.get("neurobench"), seconds["ours"]),
            "errors": outcome.errors,
            "figures": outcome.figures,
        }
    if compiled:
        torch._dynamo.reset()
        outcome = Outcome()
        runners = {
            "plain": _plain(model, batches),
            "ours": _ours(model, batches, outcome),
            "floor": _floor(model, batches, batches[0], outcome),
        }
        twins = {key: _as_twin(key, make) for key, make in runners.items()}
        compile_start = time.perf_counter()
        torch._dynamo.utils.counters.clear()
        with _RecompileLimits().watching() as limits:
            seconds = _time_group(base, twins, batches, compile_repeats, outcome)
        group: dict[str, Any] = {
            "seconds": seconds,
            "wall_s": time.perf_counter() - compile_start,
            "graphs_compiled": torch._dynamo.utils.counters["stats"]["unique_graphs"],
            "recompile_limit_hit": limits.functions,
            "ours_vs_plain": _ratio(seconds["ours"], seconds["plain"]),
            "floor_vs_plain": _ratio(seconds["floor"], seconds["plain"]),
            "ours_vs_floor": _ratio(seconds["ours"], seconds["floor"]),
            "errors": outcome.errors,
        }
        if eager:
            group["speedup_plain"] = _ratio(entry["eager"]["seconds"]["plain"], seconds["plain"])
            eager_figures = entry["eager"]["figures"]
            # ours after the compiling epoch and after the last one; the floor's reads tell
            # whether the compiled model itself computed the same spikes and membranes
            for key, reference in (("ours_first", "ours"), ("ours", "ours"),
                                   ("floor", "floor")):
                compiled_figures = outcome.figures.get(key)
                if reference in eager_figures and compiled_figures is not None:
                    group.setdefault("mismatches", {})[key] = _mismatches(
                        eager_figures[reference], compiled_figures)
        group["graph_breaks"] = {
            "ours": _graph_breaks(model, base, _ours(model, None, Outcome()), batches[0]),
            "floor": _graph_breaks(model, base, _floor(model, None, batches[0]),
                                   batches[0]),
        }
        entry["compiled"] = group
        torch._dynamo.reset()
    entry["wall_s"] = time.perf_counter() - started
    return entry


def run(names: list[str], repeats: int, compile_repeats: int, n_batches: int, eager: bool,
        compiled: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "load_before": _load(),
        },
        "metrics": [m.__name__ for m in METRICS],
        "repeats": repeats,
        "compile_repeats": compile_repeats,
        "models": {},
    }
    started = time.perf_counter()
    for name in names:
        print(f"-- {name}", flush=True)
        try:
            entry = run_model(name, ZOO[name], repeats, compile_repeats, n_batches, eager,
                              compiled)
        except Exception as exc:  # a missing framework, say: the other models still run
            traceback.print_exc()
            entry = {"about": ZOO[name].about, "error": _error(exc)}
        results["models"][name] = entry
        print(_row(name, entry), flush=True)
    results["wall_s"] = time.perf_counter() - started
    results["machine"]["load_after"] = _load()
    results["geomean"] = _geomeans(results["models"])
    return results


def _load() -> list[float] | None:
    try:
        import os

        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


RATIOS = {
    "eager": ("ours_vs_plain", "floor_vs_plain", "ours_vs_floor", "neurobench_vs_ours"),
    "compiled": ("ours_vs_plain", "floor_vs_plain", "ours_vs_floor"),
}


def _geomeans(models: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for mode, keys in RATIOS.items():
        for key in keys:
            values = [entry[mode][key] for entry in models.values()
                      if mode in entry and entry[mode].get(key) is not None]
            out.setdefault(mode, {})[key] = (
                math.exp(sum(map(math.log, values)) / len(values)) if values else None)
    return out


# ------------------------------------------------------------------------------- the table


def _cell(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _breaks(info: dict[str, Any] | None) -> str:
    if not info:
        return "-"
    return "crash" if "error" in info else str(info["breaks"])


def _compiled_state(group: dict[str, Any]) -> str:
    if "ours" in group["errors"]:
        return f"crash: {group['errors']['ours'][:80]}"
    found = group.get("mismatches")
    if found is None:
        return "-"
    cells = []
    for epoch_key, label in (("ours_first", "first epoch"), ("ours", "last epoch")):
        mismatches = found.get(epoch_key)
        if mismatches is None:
            continue
        metrics = sorted({m.split(":")[0].split(".")[0] for m in mismatches})
        cells.append(f"{label}: " + (f"differ in {', '.join(metrics)}" if metrics else "equal"))
    activity = found.get("floor")
    if activity is not None:
        cells.append("model's own activity: " + (
            f"differs ({len(activity)} of the floor's reads)" if activity else "equal"))
    return "; ".join(cells) or "-"


HEADER = (
    "| model | plain s | ours / plain | floor / plain | ours / floor | NeuroBench / ours "
    "| compiled plain s | compiled speed-up | ours / plain | floor / plain | ours / floor "
    "| graph breaks ours (floor) | compiled figures |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _row(name: str, entry: dict[str, Any]) -> str:
    """One model's line of the table."""
    if "error" in entry:
        return f"| `{name}` | not run: {entry['error'][:100]} |" + " |" * 11
    eager, comp = entry.get("eager"), entry.get("compiled")
    cells = [f"`{name}`"]
    if eager:
        cells += [_cell(eager["seconds"]["plain"], 3)]
        cells += [_cell(eager[key]) for key in RATIOS["eager"]]
    else:
        cells += ["-"] * 5
    if comp:
        breaks = comp["graph_breaks"]
        cells += [_cell(comp["seconds"]["plain"], 3), _cell(comp.get("speedup_plain"))]
        cells += [_cell(comp[key]) for key in RATIOS["compiled"]]
        cells += [f"{_breaks(breaks.get('ours'))} ({_breaks(breaks.get('floor'))})",
                  _compiled_state(comp)]
    else:
        cells += ["-"] * 7
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    lines = [HEADER] + [_row(name, entry) for name, entry in results["models"].items()]
    geo = results["geomean"]
    cells = ["geometric mean", ""]
    cells += [_cell(geo.get("eager", {}).get(key)) for key in RATIOS["eager"]]
    cells += ["", ""] + [_cell(geo.get("compiled", {}).get(key)) for key in RATIOS["compiled"]]
    cells += ["", ""]
    lines.append("| " + " | ".join(cells) + " |")
    errors = [
        f"- `{name}` {mode} {key}: {message}"
        for name, entry in results["models"].items()
        for mode in ("eager", "compiled") if mode in entry
        for key, message in entry[mode]["errors"].items()
    ]
    if errors:
        lines += ["", "Errors:", *errors]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- profiling


def _op_times(run: Callable[[], None]) -> dict[str, tuple[float, int]]:
    """Self CPU time (µs) and calls of every op in one ``run()``."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run()
    return {event.key: (event.self_cpu_time_total, event.count) for event in prof.key_averages()}


def _min_op_times(run: Callable[[], None], into: dict[str, tuple[float, int]]) -> None:
    for key, (time_us, calls) in _op_times(run).items():
        into[key] = (min(time_us, into.get(key, (math.inf, 0))[0]), calls)


def profile(name: str, top: int, repeats: int = 5) -> str:
    """Where the time of the hooked eager model goes.

    torch.profiler over one epoch of the plain twin and of the hooked model, alternating,
    each op's self CPU time the minimum over ``repeats`` epochs: the ops whose time grew
    most (profiling adds a fixed cost per op, so small ops look dearer than they are);
    then cProfile of one hooked epoch, snnmetrics' functions by cumulative time.
    """
    torch.set_num_threads(1)
    model = ZOO[name]
    torch.manual_seed(0)
    hooked = model.build().eval()
    plain = copy.deepcopy(hooked)
    gen = torch.Generator().manual_seed(1)
    batches = [poisson_spikes(model.shape, 0.1, gen) for _ in range(2)]
    metrics = [make(hooked) for make in METRICS]

    def plain_epoch() -> None:
        for x in batches:
            model.run(plain, x)

    def hooked_epoch() -> None:
        for x in batches:
            model.run(hooked, x)
            for metric in metrics:
                metric.update(batch_size=model.batch_size)

    out = io.StringIO()
    with torch.no_grad():
        plain_epoch()
        hooked_epoch()  # warm-up
        plain_ops: dict[str, tuple[float, int]] = {}
        hooked_ops: dict[str, tuple[float, int]] = {}
        for _ in range(repeats):
            _min_op_times(plain_epoch, plain_ops)
            _min_op_times(hooked_epoch, hooked_ops)
        plain_total = sum(time_us for time_us, _ in plain_ops.values())
        hooked_total = sum(time_us for time_us, _ in hooked_ops.values())
        out.write(f"{name}: torch.profiler, one epoch of {len(batches)} batches, self CPU "
                  f"time of each op the minimum of {repeats} epochs: plain "
                  f"{plain_total / 1e3:.1f} ms, hooked {hooked_total / 1e3:.1f} ms "
                  f"({hooked_total / plain_total:.2f}x)\n")
        grown = sorted(
            ((hooked_ops[key][0] - plain_ops.get(key, (0.0, 0))[0], key) for key in hooked_ops),
            reverse=True,
        )
        out.write(f"{'op':<36}{'extra ms':>10}{'share':>8}{'plain calls':>13}"
                  f"{'hooked calls':>14}\n")
        extra_total = hooked_total - plain_total
        for extra, key in grown[:top]:
            out.write(f"{key[:35]:<36}{extra / 1e3:>10.2f}{extra / extra_total:>8.0%}"
                      f"{plain_ops.get(key, (0, 0))[1]:>13}{hooked_ops[key][1]:>14}\n")
        profiler = cProfile.Profile()
        profiler.enable()
        hooked_epoch()
        profiler.disable()
    for metric in metrics:
        metric.detach()
    out.write("\ncProfile of the hooked epoch: snnmetrics functions by cumulative time\n")
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats("snnmetrics", top)
    return out.getvalue()


# ------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ZOO),
                        help=f"comma-separated, from: {', '.join(ZOO)}")
    parser.add_argument("--repeats", type=int, default=15, help="eager repeats")
    parser.add_argument("--compile-repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--no-eager", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", default=str(HERE / "results" / "zoo.json"))
    parser.add_argument("--markdown", default=str(HERE / "results" / "zoo.md"))
    parser.add_argument("--profile", metavar="MODEL",
                        help="profile the hooked eager MODEL instead of timing the zoo")
    parser.add_argument("--top", type=int, default=25, help="profile: entries shown")
    args = parser.parse_args()
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in names if name not in ZOO]
    if unknown:
        parser.error(f"unknown models {unknown}; the zoo has {', '.join(ZOO)}")
    if args.profile:
        if args.profile not in ZOO:
            parser.error(f"unknown model {args.profile!r}; the zoo has {', '.join(ZOO)}")
        print(profile(args.profile, args.top))
        return
    results = run(names, args.repeats, args.compile_repeats, args.batches,
                  eager=not args.no_eager, compiled=not args.no_compile)
    table = markdown(results)
    repeats = [f"{args.repeats} eager"] * (not args.no_eager) + [
        f"{args.compile_repeats} compiled"] * (not args.no_compile)
    header = (f"metrics: {', '.join(results['metrics'])}; one thread; CPU time; min of "
              f"{' / '.join(repeats)} repeats; load "
              f"{results['machine']['load_before']} -> {results['machine']['load_after']}; "
              f"{results['wall_s']:.0f} s")
    print(header)
    print(table)
    for path, text in ((args.json, json.dumps(results, indent=2)),
                       (args.markdown, header + "\n\n" + table + "\n")):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()

"""Differentiable activity losses: synaptic operations and a firing-rate band.

Two losses that train a network to spike less, on tensors you pass in or, through
:class:`ActivityRegularizer`, on a hooked model during a training step:

* :func:`synops_loss`: synaptic operations per sample, ``sum(activity * fanout) / B``, the
  loss of Sorbaro, Liu, Bortone and Sheik, "Optimizing the energy consumption of spiking
  neural networks for neuromorphic applications", Front. Neurosci. 14:662 (2020). Through
  surrogate gradients every spike pays for the synapses it drives.
* :func:`rate_band_loss`: ``sum over layers of relu(rate - high)**2 + relu(low - rate)**2``
  on each layer's mean firing rate: zero while every layer fires within ``[low, high]``,
  quadratic outside (the upper and lower population bounds of stork's regularisers,
  Zenke & Vogels, Neural Computation 33(4), 2021, with rates instead of spike counts).

They need spikes that carry a gradient (snnTorch neurons with a surrogate, say); the
losses add no gradient of their own to a spike function.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from snnmetrics.connections import ConnectionRule, connection_rule
from snnmetrics.functional.fanout import fanout as fanout_of
from snnmetrics.functional.fanout import fanout_map
from snnmetrics.functional.synops import as_fanout
from snnmetrics.neurons import NeuronRule, find_neurons

__all__ = ["ActivityRegularizer", "band_penalty", "rate_band_loss", "synops_loss"]


def synops_loss(activations: Tensor, fanout: float | Tensor | nn.Module) -> Tensor:
    """Synaptic operations per sample, differentiable with respect to ``activations``.

    Args:
        activations: spikes (or spike counts) of the neurons that feed one connection
            layer, batch first: ``(B, *neurons)`` summed over time, or with a time
            dimension, e.g. ``(B, T, *neurons)``.
        fanout: the synapses each neuron drives: a number, a tensor of the trailing neuron
            shape, or the connection layer the activations feed (its structural fanout,
            :func:`snnmetrics.functional.fanout`, every weight counted).

    Returns:
        ``sum(activations * fanout) / B``, a 0-d tensor. With spikes in {0, 1} at every
        step this equals the effective synaptic operations per sample of
        :class:`snnmetrics.SynapticOperations` for those inputs (with the layer's
        structural fanout: ``skip_zero_weights=False``). Values are not checked (a
        training step should not wait for the host): NaN gives a NaN loss.

    Example:
        >>> import torch
        >>> spikes = torch.tensor([[1., 0., 2.], [0., 1., 0.]], requires_grad=True)
        >>> loss = synops_loss(spikes, torch.nn.Linear(3, 10))
        >>> loss
        tensor(20., grad_fn=<DivBackward0>)
        >>> loss.backward(); spikes.grad[0]  # each spike costs its 10 synapses, per sample
        tensor([5., 5., 5.])
    """
    if not isinstance(activations, Tensor) or not activations.is_floating_point():
        got = activations.dtype if isinstance(activations, Tensor) else type(activations).__name__
        raise TypeError(f"activations must be a floating-point tensor of spikes, got {got}")
    if activations.ndim < 2:
        raise ValueError(
            f"activations must be batch first with neuron dimensions, (B, ...), got shape "
            f"{tuple(activations.shape)}"
        )
    if isinstance(fanout, nn.Module):
        fan = fanout_of(fanout, activations.shape[1:]).to(torch.float64)
    else:
        fan = as_fanout(fanout)
    trailing = activations.shape[activations.ndim - fan.ndim :]
    if fan.ndim >= activations.ndim or fan.shape != trailing:
        raise ValueError(
            f"fanout of shape {tuple(fan.shape)} does not match activations of shape "
            f"{tuple(activations.shape)}: it must be a number or have the trailing neuron shape"
        )
    weighted = activations * fan.to(activations.device, activations.dtype)
    return weighted.sum() / activations.shape[0]


def _check_band(low: float, high: float) -> tuple[float, float]:
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a firing rate (a number), got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite rate >= 0, got {value}")
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    return float(low), float(high)


def band_penalty(rates: Tensor, low: float, high: float) -> Tensor:
    """``sum(relu(rates - high)**2 + relu(low - rates)**2)``: the distance of each rate
    from the band ``[low, high]``, squared and summed.

    Example:
        >>> import torch
        >>> band_penalty(torch.tensor([0.05, 0.5, 0.9]), low=0.1, high=0.8)
        tensor(0.0125)
    """
    low, high = _check_band(low, high)
    above = torch.relu(rates - high)
    below = torch.relu(low - rates)
    return (above * above + below * below).sum()


def rate_band_loss(spikes: Tensor | Sequence[Tensor], low: float, high: float) -> Tensor:
    """Penalty on the layers whose mean firing rate leaves ``[low, high]``.

    Args:
        spikes: one layer's spikes at every step of a batch in one tensor (any layout,
            e.g. snnTorch's ``torch.stack(spike_record)`` of shape ``(T, B, *neurons)``),
            or a sequence of such tensors, one per layer.
        low: the lowest mean rate (spikes per neuron per step) not penalised.
        high: the highest mean rate not penalised.

    Returns:
        :func:`band_penalty` of the layers' rates, where a layer's rate is the mean of its
        tensor: its spikes over samples x steps x neurons, which for spikes in {0, 1} is
        the ``mean`` of :class:`snnmetrics.FiringRate` for that batch.

    Example:
        >>> import torch
        >>> spikes = torch.zeros(4, 2, 5)  # (T, B, neurons): 4 spikes in 40 = rate 0.1
        >>> spikes[0, 0, :4] = 1.0
        >>> round(float(rate_band_loss(spikes, low=0.2, high=0.5)), 6)  # (0.2 - 0.1) ** 2
        0.01
    """
    layers = [spikes] if isinstance(spikes, Tensor) else list(spikes)
    if not layers:
        raise ValueError("spikes must hold at least one layer's spikes")
    for layer in layers:
        if not isinstance(layer, Tensor) or not layer.is_floating_point():
            raise TypeError(f"spikes must be floating-point tensors, got {layer!r:.60}")
        if layer.numel() == 0:
            raise ValueError("a layer's spikes are empty: its rate is undefined")
    rates = torch.stack([layer.mean() for layer in layers])
    return band_penalty(rates, low, high)


def _counted(x: Tensor) -> Tensor:
    """1 per nonzero element (as the metrics count), with the gradient of ``x`` itself.

    For spikes in {0, 1} this is ``x``; a graded or negative value counts once, as it
    does in the metrics, while its gradient stays that of ``x`` (straight through).
    """
    nonzero = x.detach().abs().clamp(max=1).ceil()
    return x + (nonzero - x).detach() if x.requires_grad else nonzero


def _unwrap(model: nn.Module) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return model.module
    return model


class ActivityRegularizer:
    """Differentiable synaptic operations and firing rates of a model in a training step.

    Hooks every connection layer with a fanout map (``nn.Linear``, ``nn.ConvNd``,
    ``nn.ConvTransposeNd``, snnTorch's recurrent layers; recurrent cells such as
    ``nn.LSTMCell`` are left out) and every spiking neuron, or the layers named in
    ``layers``. Inside :meth:`step` the hooks add, call by call, each connection layer's
    inputs into one running sum per layer (the layer's input shape, summed over batch
    and time) and each neuron layer's spikes into one running total, keeping their
    gradients; nothing else is stored, and the sums are dropped when the step ends.
    Outside a step the hooks do nothing (a validation pass costs nothing).

    * :meth:`synops_loss`: synaptic operations per sample of the step so far, with each
      layer's structural fanout. Its value equals ``SynapticOperations(model,
      skip_zero_weights=False)``'s ``synops`` for the same forward passes (a nonzero
      input counts once); its gradient is that of ``sum(input * fanout) / B``
      (Sorbaro et al. 2020), which has the same value when the inputs are spikes.
    * :meth:`rates`: each neuron layer's mean firing rate of the step, equal to
      ``FiringRate(model)``'s ``mean`` for the same forward passes.
    * :meth:`rate_band_loss`: :func:`band_penalty` of those rates.

    The number of samples is dim 0 of the first hooked input of the step, as in the
    metrics, unless ``step(batch_size=...)`` gives it. The hooks are the regularizer's
    own (the metrics' hooks count detached tensors): :meth:`detach` removes them, or
    use the regularizer as a context manager.

    Example:
        >>> import torch, snntorch as snn
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(beta=0.9, init_hidden=True),
        ...                           torch.nn.Linear(3, 2), snn.Leaky(beta=0.9, init_hidden=True))
        >>> regularizer = ActivityRegularizer(net)
        >>> x = torch.ones(8, 5, 4)                  # [batch, time, features]
        >>> with regularizer.step():
        ...     out = sum(net(x[:, t]) for t in range(5))
        ...     penalty = 1e-3 * regularizer.synops_loss() + regularizer.rate_band_loss(0.0, 0.2)
        ...     loss = out.sum() + penalty
        >>> loss.backward()
        >>> regularizer.detach()
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None) -> None:
        inner = _unwrap(model)
        connections: dict[str, tuple[nn.Module, ConnectionRule]] = {}
        excluded: dict[str, nn.Module] = {}
        for name, module in inner.named_modules():
            rule = connection_rule(module)
            if isinstance(rule, ConnectionRule):
                connections[name] = (module, rule)
            elif rule is not None:
                excluded[name] = module
        neurons = {
            name: (module, rule) for name, module, rule in find_neurons(inner) if rule.spiking
        }
        if layers is not None:
            wanted = _check_layer_names(layers)
            for name in wanted:
                if name in excluded:
                    raise TypeError(
                        f"layer {name!r} ({type(excluded[name]).__name__}) has no fanout map; "
                        "ActivityRegularizer counts layers with a ConnectionRule only"
                    )
                if name not in connections and name not in neurons:
                    raise ValueError(
                        f"layers names {name!r}, which is neither a connection layer nor a "
                        f"spiking neuron of {type(inner).__name__}"
                    )
            connections = {n: c for n, c in connections.items() if n in wanted}
            neurons = {n: c for n, c in neurons.items() if n in wanted}
        if not connections and not neurons:
            raise ValueError(
                f"{type(inner).__name__} has no connection layer with a fanout map and no "
                "spiking neuron to regularize"
            )
        self.connection_names = list(connections)
        self.neuron_names = list(neurons)
        self._connections = connections
        self._fanouts: dict[tuple[str, torch.Size, torch.device], Tensor] = {}
        self._handles: list[RemovableHandle] = []
        for name, (module, rule) in connections.items():
            hook = self._connection_hook(name, rule)
            self._handles.append(module.register_forward_pre_hook(hook))
        for name, (module, neuron) in neurons.items():
            self._handles.append(module.register_forward_hook(self._neuron_hook(name, neuron)))
        self._active = False
        self._clear()

    def _clear(self) -> None:
        self._samples: int | None = None
        self._inputs: dict[str, Tensor] = {}
        self._spikes: dict[str, Tensor] = {}
        self._elements: dict[str, int] = {}

    @contextmanager
    def step(self, batch_size: int | None = None) -> Iterator[ActivityRegularizer]:
        """Count the forward passes of one training step; the sums are dropped at its end.

        Args:
            batch_size: samples in the step; default dim 0 of the first hooked input.
        """
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
        ):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        if not self._handles:
            raise RuntimeError("ActivityRegularizer is detached from its model")
        if self._active:
            raise RuntimeError("ActivityRegularizer.step() is already open")
        self._clear()
        self._samples = batch_size
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            self._clear()

    def _note_samples(self, rows: int) -> None:
        if self._samples is None:
            self._samples = rows

    def _connection_hook(self, name: str, rule: ConnectionRule) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            if not self._active:
                return
            if not args or not isinstance(args[0], Tensor):
                raise TypeError(
                    f"{type(module).__name__} must be called with its input tensor as the "
                    "first positional argument to be regularized"
                )
            x = args[0]
            n_rows = x.ndim - rule.feature_dims(module)
            if n_rows < 0:
                return  # the layer rejects this input itself
            self._note_samples(x.shape[0] if n_rows else 1)
            counted = _counted(x if x.is_floating_point() else x.to(torch.float32))
            per_element = counted.sum(tuple(range(n_rows))) if n_rows else counted
            before = self._inputs.get(name)
            if before is not None and before.shape != per_element.shape:
                raise ValueError(
                    f"layer {name!r} was called with inputs of shape {tuple(per_element.shape)} "
                    f"per row after {tuple(before.shape)} in one step"
                )
            self._inputs[name] = per_element if before is None else before + per_element

        return hook

    def _neuron_hook(self, name: str, rule: NeuronRule) -> Any:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            if not self._active:
                return
            spikes = rule.spikes(module, output)
            if not isinstance(spikes, Tensor):
                raise TypeError(
                    f"the spikes of {type(module).__name__} must be a tensor, got "
                    f"{type(spikes).__name__}"
                )
            self._note_samples(spikes.shape[0] if spikes.ndim else 1)
            total = _counted(spikes if spikes.is_floating_point() else spikes.float()).sum()
            before = self._spikes.get(name)
            self._spikes[name] = total if before is None else before + total
            self._elements[name] = self._elements.get(name, 0) + spikes.numel()

        return hook

    def _require_step(self) -> int:
        if not self._active:
            raise RuntimeError("call the loss inside `with regularizer.step():`")
        if self._samples is None:
            raise ValueError("no hooked layer ran in this step: run the model first")
        return self._samples

    def synops_loss(self) -> Tensor:
        """Synaptic operations per sample of this step so far (differentiable, 0-d)."""
        samples = self._require_step()
        if not self._inputs:
            raise ValueError("no regularized connection layer ran in this step")
        total: Tensor | None = None
        for name, inputs in self._inputs.items():
            term = (inputs * self._fanout(name, inputs)).sum()
            total = term if total is None else total + term
        assert total is not None
        return total / samples

    def _fanout(self, name: str, inputs: Tensor) -> Tensor:
        """The structural fanout of layer ``name`` for one row of ``inputs`` (cached)."""
        key = (name, inputs.shape, inputs.device)
        cached = self._fanouts.get(key)
        if cached is None:
            module, rule = self._connections[name]
            cached = fanout_map(module, rule, inputs.shape, False, device=inputs.device)
            self._fanouts[key] = cached
        return cached.to(inputs.dtype)

    def rates(self) -> dict[str, Tensor]:
        """Each neuron layer's mean firing rate in this step (differentiable), by name."""
        self._require_step()
        if not self._spikes:
            raise ValueError("no regularized spiking neuron ran in this step")
        return {name: total / self._elements[name] for name, total in self._spikes.items()}

    def rate_band_loss(self, low: float, high: float) -> Tensor:
        """:func:`band_penalty` of :meth:`rates`: zero while every layer is in the band."""
        return band_penalty(torch.stack(list(self.rates().values())), low, high)

    def detach(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ActivityRegularizer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.detach()


def _check_layer_names(layers: Any) -> set[str]:
    expected = f"layers must be a sequence of layer names or None, got {layers!r}"
    if isinstance(layers, str) or not isinstance(layers, (Sequence, set, frozenset)):
        raise TypeError(expected)
    wanted = set(layers)
    if not all(isinstance(name, str) for name in wanted):
        raise TypeError(expected)
    if not wanted:
        raise ValueError("layers must name at least one layer")
    return wanted

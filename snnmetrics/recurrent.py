"""Synaptic operations of recurrent cells and layers, counted call by call.

``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell`` follow NeuroBench 2.3.0's rules. With
``x̄``, ``h̄``, ``c̄`` the input and state with every nonzero set to 1, and ``W̄``, ``b̄``
the weights and biases likewise (every weight counts as 1 with
``skip_zero_weights=False``), one call of a cell counts, per sample:

* every cell: the weight products ``sum(W̄_ih x̄) + sum(W̄_hh h̄)`` over all gates; biases
  are not counted;
* ``LSTMCell``, in addition: a gate is *active* where its count plus its biases is
  nonzero; one operation per active ``f`` with nonzero ``c̄`` and per active ``i`` with
  active ``g`` (the cell update), and one per active ``o`` whose cell update is nonzero;
* ``GRUCell``, in addition: one operation per active ``r`` whose hidden part of the new
  gate (``W̄_hn h̄ + b̄_hn``) is nonzero, one per unit whose ``z`` count is not exactly 1 and
  whose new gate (hidden part + input bias + that product) is nonzero (NeuroBench's
  ``(1 - z) * n``), and one per active ``z`` with nonzero ``h̄`` (``z * h``).

The call is a MAC call if its input (not the state) holds a value outside {-1, 0, 1}.
A call without a state counts no state terms, in the effective and the dense count.
*Dense* is the same count with every input, state, weight and bias set to 1.

Two NeuroBench quirks are reproduced by default and can be turned off with
``neurobench_quirks=False`` (:func:`lstm_cell_rule`, :func:`gru_cell_rule`,
:func:`lstm_rule`, :func:`gru_rule`, registered with
:func:`~snnmetrics.connections.register_connection`): the LSTM dense count binarises
``(h, c)`` instead of setting them to 1, and the GRU new gate takes element 2 of
``bias_ih`` as every unit's input bias. NeuroBench's failures are not reproduced: a cell
called without a state counts only its first sample there (every sample here), unbatched
``LSTMCell``/``GRUCell`` input is miscounted there (one sample here), and a ``GRUCell``
without bias or without a state, or an ``LSTMCell`` with bias without a state, raises
there; the rules above define those cases here.

Full ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` layers (which NeuroBench rejects) count the cell
rule of their kind at every timestep, layer and direction, as a loop of explicit cells
that always receives the state (zeros when the layer is called without one): each of those
cell calls is an AC or a MAC call by its own input, so the layers after the first, whose
input is the previous layer's output, do MACs. ``proj_size`` adds the projection as a
linear layer: the pairs (nonzero unprojected output, nonzero ``weight_hr``), and
``hidden_size * proj_size`` per sample and step to the dense count. To see the hidden
states, the count replays the layer step by step (about the cost of an unfused forward
pass); inter-layer dropout is not replayed, and ``PackedSequence`` input is not supported.
The number of samples of a layer call is its batch size (dim 1 of a ``batch_first=False``
input).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from snnmetrics.connections import CallCount, CallRule, register_connection

__all__ = ["NORSE_RECURRENT_CELL", "gru_cell_rule", "gru_rule", "lstm_cell_rule", "lstm_rule"]

_F32, _F64 = torch.float32, torch.float64
_Params = tuple[Tensor, Tensor, Tensor | None, Tensor | None]  # w_ih, w_hh, b_ih, b_hh


class _Operands(NamedTuple):
    """0/1 float32 operands of one cell step over ``R`` rows (samples, or steps x samples)."""

    x: Tensor  # [R, input]
    h: Tensor | None  # [R, state]; None when the call has no state
    c: Tensor | None  # [R, hidden] (LSTM)
    w_ih: Tensor  # [gates * hidden, input]
    w_hh: Tensor  # [gates * hidden, state]
    b_ih: Tensor | None  # [gates * hidden]
    b_hh: Tensor | None


# ----------------------------------------------------------------------------- cell rules


def _rnn_ops(p: _Operands, quirks: bool) -> Tensor:
    ops = p.x.to(_F64) @ p.w_ih.sum(0, dtype=_F64)
    if p.h is not None:
        ops = ops + p.h.to(_F64) @ p.w_hh.sum(0, dtype=_F64)
    return ops


def _gate_counts(p: _Operands) -> tuple[Tensor, Tensor]:
    """Per gate unit, the nonzero (weight, input) and (weight, state) pairs."""
    from_input = p.x @ p.w_ih.T
    from_state = p.h @ p.w_hh.T if p.h is not None else torch.zeros_like(from_input)
    return from_input, from_state


def _or_zeros(bias: Tensor | None, like: Tensor) -> Tensor:
    return bias if bias is not None else like.new_zeros(like.shape[-1])


def _lstm_ops(p: _Operands, quirks: bool) -> Tensor:
    from_input, from_state = _gate_counts(p)
    products = from_input + from_state
    ops = products.sum(1, dtype=_F64)
    active = (products + _or_zeros(p.b_ih, products) + _or_zeros(p.b_hh, products)) != 0
    i, f, g, o = active.chunk(4, 1)
    update = (i & g).to(_F32)
    if p.c is not None:
        update = update + (f & (p.c != 0))
    ops = ops + update.sum(1, dtype=_F64)
    return ops + (o & (update != 0)).sum(1, dtype=_F64)


def _gru_ops(p: _Operands, quirks: bool) -> Tensor:
    from_input, from_state = _gate_counts(p)
    products = from_input + from_state
    ops = products.sum(1, dtype=_F64)
    b_ih, b_hh = _or_zeros(p.b_ih, products), _or_zeros(p.b_hh, products)
    r, z, _ = (products + b_ih + b_hh).chunk(3, 1)
    hidden_new = from_state.chunk(3, 1)[2]
    reset = (r != 0) & ((hidden_new + b_hh.chunk(3)[2]) != 0)
    # NeuroBench 2.3.0 adds element 2 of b_ih to every unit's new gate, not each unit's b_in
    b_in = b_ih[2] if quirks else b_ih.chunk(3)[2]
    new = (hidden_new + b_in + reset) != 0
    ops = ops + reset.sum(1, dtype=_F64) + ((z != 1) & new).sum(1, dtype=_F64)
    if p.h is not None:
        ops = ops + ((z != 0) & (p.h != 0)).sum(1, dtype=_F64)
    return ops


# ----------------------------------------------------------------------------- replay steps

# (layer, x_t, state, params, projection weight) -> (next state, unprojected output)
_Step = Callable[
    [nn.Module, Tensor, tuple[Tensor, ...], _Params, Tensor | None],
    tuple[tuple[Tensor, ...], Tensor],
]


def _rnn_step(
    layer: nn.Module, x: Tensor, state: tuple[Tensor, ...], params: _Params, proj: Tensor | None
) -> tuple[tuple[Tensor, ...], Tensor]:
    cell = torch.rnn_relu_cell if layer.nonlinearity == "relu" else torch.rnn_tanh_cell
    h = cell(x, state[0], *params)
    return (h,), h


def _gru_step(
    layer: nn.Module, x: Tensor, state: tuple[Tensor, ...], params: _Params, proj: Tensor | None
) -> tuple[tuple[Tensor, ...], Tensor]:
    h = torch.gru_cell(x, state[0], *params)
    return (h,), h


def _lstm_step(
    layer: nn.Module, x: Tensor, state: tuple[Tensor, ...], params: _Params, proj: Tensor | None
) -> tuple[tuple[Tensor, ...], Tensor]:
    if proj is None:  # the kernel of nn.LSTMCell
        h, c = torch.lstm_cell(x, state, *params)
        return (h, c), h
    w_ih, w_hh, b_ih, b_hh = params
    gates = nn.functional.linear(x, w_ih, b_ih) + nn.functional.linear(state[0], w_hh, b_hh)
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
    unprojected = torch.sigmoid(o) * torch.tanh(c)
    return (nn.functional.linear(unprojected, proj), c), unprojected


@dataclass(frozen=True)
class _Cell:
    gates: int
    ops: Callable[[_Operands, bool], Tensor]  # per-row operations (operands, quirks)
    step: _Step  # one step of the real cell, to replay a full layer
    cell_state: bool = False  # the state is (h, c)


_RNN = _Cell(1, _rnn_ops, _rnn_step)
_GRU = _Cell(3, _gru_ops, _gru_step)
_LSTM = _Cell(4, _lstm_ops, _lstm_step, cell_state=True)


# ----------------------------------------------------------------------------- counting


def _binary(t: Tensor) -> Tensor:
    return (t.detach() != 0).to(_F32)


def _mask(t: Tensor, skip_zero_weights: bool, cache: dict[Any, Any]) -> Tensor:
    """The 0/1 float32 synapse mask of a weight (all ones with ``skip_zero_weights=False``),
    kept in the tap's ``cache`` until the weight changes or the window ends."""
    key, stamp = (id(t), skip_zero_weights), (t._version, t.data_ptr(), t.device)
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        return cast(Tensor, hit[1])
    with torch.inference_mode(False):  # cached across calls: a normal tensor
        mask = _binary(t) if skip_zero_weights else torch.ones_like(t, dtype=_F32)
    cache[key] = (stamp, mask)
    return mask


def _mac(x: Tensor, dims: tuple[int, ...] | None = None) -> Tensor:
    """1.0 if a value of ``x`` (over ``dims``) is outside {-1, 0, 1}, else 0.0; NaN with NaN."""
    magnitude = x.detach().abs()
    distance = (magnitude - magnitude.sign()).abs()
    distance = distance.amax() if dims is None else distance.amax(dims)
    return distance.clamp(max=1).ceil().to(_F64)


def _params(layer: nn.Module, suffix: str = "") -> _Params:
    def get(name: str) -> Tensor:
        return cast(Tensor, getattr(layer, name + suffix))

    if layer.bias:
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")
    return get("weight_ih"), get("weight_hh"), None, None


def _operands(
    x: Tensor,
    h: Tensor | None,
    c: Tensor | None,
    params: _Params,
    skip_zero_weights: bool,
    cache: dict[Any, Any],
) -> _Operands:
    w_ih, w_hh, b_ih, b_hh = params
    return _Operands(
        _binary(x),
        None if h is None else _binary(h),
        None if c is None else _binary(c),
        _mask(w_ih, skip_zero_weights, cache),
        _mask(w_hh, skip_zero_weights, cache),
        None if b_ih is None else _mask(b_ih, skip_zero_weights, cache),
        None if b_hh is None else _mask(b_hh, skip_zero_weights, cache),
    )


@functools.lru_cache(maxsize=256)
def _dense_per_row(
    cell: _Cell, quirks: bool, inputs: int, state: int, hidden: int, bias: bool, has_state: bool
) -> int:
    """Dense operations of one sample with every value 1 (host arithmetic on shapes)."""
    size = cell.gates * hidden
    ones = functools.partial(torch.ones, dtype=_F32)
    operands = _Operands(
        ones(1, inputs),
        ones(1, state) if has_state else None,
        ones(1, hidden) if has_state else None,
        ones(size, inputs),
        ones(size, state),
        ones(size) if bias else None,
        ones(size) if bias else None,
    )
    return int(cell.ops(operands, quirks).sum())


def _dense(
    cell: _Cell, quirks: bool, x: Tensor, h: Tensor | None, c: Tensor | None, params: _Params
) -> Tensor | int:
    """Dense operations of ``x.shape[0]`` rows with the given states."""
    w_ih, w_hh, b_ih, _ = params
    hidden = w_hh.shape[0] // cell.gates
    if quirks and c is not None and h is not None:
        # NeuroBench's LSTM dense pass sets the input and the weights to 1 but binarises
        # (h, c): every gate unit reads inputs + nnz(h) products and is active (inputs >= 1),
        # the update counts i*g for every unit and f*c where c is nonzero, the output one
        # per unit.
        per_row = 4 * hidden * w_ih.shape[1] + 2 * hidden
        nonzero = 4 * hidden * (h != 0).sum(dtype=_F64) + (c != 0).sum(dtype=_F64)
        return x.shape[0] * per_row + nonzero
    per_row = _dense_per_row(
        cell, quirks, w_ih.shape[1], w_hh.shape[1], hidden, b_ih is not None, h is not None
    )
    return x.shape[0] * per_row


def _input(layer: nn.Module, args: tuple[object, ...]) -> Tensor:
    x = args[0] if args else None
    if isinstance(x, PackedSequence):
        raise TypeError(
            f"{type(layer).__name__} called with a PackedSequence cannot be counted; "
            "pass a padded tensor"
        )
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{type(layer).__name__} must be called with its input tensor as the first "
            "positional argument to be counted"
        )
    return x


def _state(cell: _Cell, hx: object) -> tuple[Tensor | None, Tensor | None]:
    if hx is None:
        return None, None
    if cell.cell_state:
        h, c = cast(tuple[Tensor, Tensor], hx)
        return h, c
    return cast(Tensor, hx), None


def _count_cell(
    cell: _Cell,
    quirks: bool,
    layer: nn.Module,
    args: tuple[object, ...],
    skip_zero_weights: bool,
    cache: dict[Any, Any],
) -> CallCount | None:
    x = _input(layer, args)
    if x.ndim not in (1, 2):
        return None  # the cell rejects it
    h, c = _state(cell, args[1] if len(args) > 1 else None)
    if x.ndim == 1:  # unbatched: one sample
        x = x[None]
        h = None if h is None else h[None]
        c = None if c is None else c[None]
    samples = x.shape[0]
    if samples == 0:
        zero = torch.zeros((), dtype=_F64, device=x.device)
        return CallCount(zero, zero, 0, 0)
    params = _params(layer)
    effective = cell.ops(_operands(x, h, c, params, skip_zero_weights, cache), quirks).sum()
    dense = _dense(cell, quirks, x, h, c, params)
    return CallCount(effective, effective * _mac(x), dense, samples)


def _initial_states(
    cell: _Cell, layer: nn.RNNBase, hx: object, batch: int, batched: bool, like: Tensor
) -> list[tuple[Tensor, ...]]:
    """Per (layer, direction), the state the layer starts from, batched."""
    count = layer.num_layers * (2 if layer.bidirectional else 1)
    hidden = layer.hidden_size
    out = layer.proj_size if layer.proj_size > 0 else hidden
    h, c = _state(cell, hx)
    if h is None:
        h = like.new_zeros(count, batch, out)
        c = like.new_zeros(count, batch, hidden) if cell.cell_state else None
    elif not batched:
        h, c = h.unsqueeze(1), None if c is None else c.unsqueeze(1)
    return [(h[k],) if c is None else (h[k], c[k]) for k in range(count)]


def _count_layer(
    cell: _Cell,
    quirks: bool,
    layer: nn.Module,
    args: tuple[object, ...],
    skip_zero_weights: bool,
    cache: dict[Any, Any],
) -> CallCount | None:
    layer = cast(nn.RNNBase, layer)
    x = _input(layer, args)
    if x.ndim not in (2, 3):
        return None  # the layer rejects it
    batched = x.ndim == 3
    seq = x.detach()
    if not batched:
        seq = seq.unsqueeze(1)
    elif layer.batch_first:
        seq = seq.transpose(0, 1)
    steps, batch = seq.shape[:2]
    effective = torch.zeros((), dtype=_F64, device=x.device)
    in_mac_calls = effective.clone()
    dense: Tensor | int = 0
    if steps == 0 or batch == 0:
        return CallCount(effective, in_mac_calls, 0, batch if batched else 1)
    states = _initial_states(cell, layer, args[1] if len(args) > 1 else None, batch, batched, seq)
    directions = 2 if layer.bidirectional else 1
    with torch.no_grad():
        for index in range(layer.num_layers):
            outputs = []
            for direction in range(directions):
                suffix = f"_l{index}" + ("_reverse" if direction else "")
                params = _params(layer, suffix)
                proj: Tensor | None = getattr(layer, "weight_hr" + suffix, None)
                run = seq.flip(0) if direction else seq
                state = states[index * directions + direction]
                before, unprojected = [], []
                for t in range(steps):
                    before.append(state)
                    state, raw = cell.step(layer, run[t], state, params, proj)
                    unprojected.append(raw)
                rows = steps * batch
                flat = run.reshape(rows, -1)
                h = torch.stack([s[0] for s in before]).reshape(rows, -1)
                c = None
                if cell.cell_state:
                    c = torch.stack([s[1] for s in before]).reshape(rows, -1)
                operands = _operands(flat, h, c, params, skip_zero_weights, cache)
                per_step = cell.ops(operands, quirks).reshape(steps, batch).sum(1)
                dense = dense + _dense(cell, quirks, flat, h, c, params)
                raws = torch.stack(unprojected)
                if proj is not None:
                    fan = _mask(proj, skip_zero_weights, cache).sum(0, dtype=_F64)
                    per_step = per_step + _binary(raws).sum(1, dtype=_F64) @ fan
                    dense = dense + rows * proj.numel()
                effective = effective + per_step.sum()
                in_mac_calls = in_mac_calls + (per_step * _mac(run, (1, 2))).sum()
                out = raws if proj is None else nn.functional.linear(raws, proj)
                outputs.append(out.flip(0) if direction else out)
            seq = torch.cat(outputs, -1)
    return CallCount(effective, in_mac_calls, dense, batch if batched else 1)


# ----------------------------------------------------------------------------- norse


def _norse_spikes(state: object) -> Tensor | None:
    """The previous spikes ``z`` held by a norse recurrent cell's state, if any."""
    if state is None:
        return None
    inner = getattr(state, "lif", state)  # LIFRefracState wraps a LIFState
    return cast(Tensor | None, getattr(inner, "z", None))


def _count_norse_cell(
    layer: nn.Module, args: tuple[object, ...], skip_zero_weights: bool, cache: dict[Any, Any]
) -> CallCount | None:
    x = _input(layer, args)
    w_in = cast(Tensor, layer.input_weights)
    w_rec = cast(Tensor, layer.recurrent_weights)
    if x.ndim == 0 or x.shape[-1] != w_in.shape[1]:
        return None  # the cell rejects it
    rows = x.reshape(-1, x.shape[-1])
    ops = _binary(rows).to(_F64) @ _mask(w_in, skip_zero_weights, cache).sum(0, dtype=_F64)
    dense = rows.shape[0] * w_in.numel()
    z = _norse_spikes(args[1] if len(args) > 1 else None)
    if z is not None:
        spikes = _binary(z.reshape(-1, z.shape[-1])).to(_F64)
        ops = ops + spikes @ _mask(w_rec, skip_zero_weights, cache).sum(0, dtype=_F64)
        dense += spikes.shape[0] * w_rec.numel()
    effective = ops.sum()
    return CallCount(effective, effective * _mac(x), dense, x.shape[0] if x.ndim > 1 else 1)


NORSE_RECURRENT_CELL: CallRule = CallRule(_count_norse_cell)
"""The rule of norse's recurrent cells (``SNNRecurrentCell``: ``LIFRecurrentCell``, ...).

Their ``input_weights`` and ``recurrent_weights`` are linear maps of the input and of the
spikes ``z`` of the previous step, which the cell reads from its state argument: a call
counts the pairs (nonzero input, nonzero input weight) and (nonzero ``z``, nonzero
recurrent weight), like an ``RNNCell``; a call without a state has no recurrent terms.
The neuron dynamics are not synaptic operations. Registered once norse is imported.
"""


# ----------------------------------------------------------------------------- registration


def _rule(count: Callable[..., CallCount | None], cell: _Cell, quirks: bool) -> CallRule:
    if not isinstance(quirks, bool):
        raise TypeError(f"neurobench_quirks must be a bool, got {quirks!r}")
    return CallRule(functools.partial(count, cell, quirks))


def lstm_cell_rule(neurobench_quirks: bool = True) -> CallRule:
    """The rule of ``nn.LSTMCell``, optionally without NeuroBench 2.3.0's quirk.

    Args:
        neurobench_quirks: ``True`` (default) reproduces NeuroBench exactly: its dense
            count sets the input to 1 but binarises ``(h, c)``, so it depends on the state.
            ``False`` counts every state value, as the other cells do.

    Example:
        >>> import torch
        >>> from snnmetrics import SynapticOperations, register_connection
        >>> from snnmetrics.recurrent import lstm_cell_rule
        >>> register_connection(torch.nn.LSTMCell, lstm_cell_rule(neurobench_quirks=False))
        >>> cell = torch.nn.LSTMCell(25, 5)
        >>> with SynapticOperations(cell) as synops:
        ...     _ = cell(torch.ones(1, 25), (torch.zeros(1, 5), torch.zeros(1, 5)))
        ...     synops.update()
        ...     float(synops.compute()["dense"])  # 4*5*25 + 4*5*5 + 3*5, whatever the state
        615.0
        >>> register_connection(torch.nn.LSTMCell, lstm_cell_rule())  # back to NeuroBench's
    """
    return _rule(_count_cell, _LSTM, neurobench_quirks)


def gru_cell_rule(neurobench_quirks: bool = True) -> CallRule:
    """The rule of ``nn.GRUCell``, optionally without NeuroBench 2.3.0's quirk.

    Args:
        neurobench_quirks: ``True`` (default) reproduces NeuroBench exactly: it adds
            element 2 of ``bias_ih`` to every unit's new gate. ``False`` uses each unit's
            own input bias of the new gate.
    """
    return _rule(_count_cell, _GRU, neurobench_quirks)


def lstm_rule(neurobench_quirks: bool = True) -> CallRule:
    """The rule of a full ``nn.LSTM``: :func:`lstm_cell_rule` at every step and layer."""
    return _rule(_count_layer, _LSTM, neurobench_quirks)


def gru_rule(neurobench_quirks: bool = True) -> CallRule:
    """The rule of a full ``nn.GRU``: :func:`gru_cell_rule` at every step and layer."""
    return _rule(_count_layer, _GRU, neurobench_quirks)


register_connection(nn.RNNCell, _rule(_count_cell, _RNN, True))  # no quirk to choose
register_connection(nn.GRUCell, gru_cell_rule())
register_connection(nn.LSTMCell, lstm_cell_rule())
register_connection(nn.RNN, _rule(_count_layer, _RNN, True))
register_connection(nn.GRU, gru_rule())
register_connection(nn.LSTM, lstm_rule())

"""Taps for the sparse-code metrics: each call's binary code of a neuron layer, and the
input of the connection layer that feeds it.

A :class:`CodeTap` reads a neuron layer's spikes once per call, takes each row's binary
code (nonzero = active) and feeds what its subscribers asked for:

* additive figures, kept as cumulative device counters that subscribers snapshot (as the
  other taps do): the histogram of active units per code, NaN readings, and, paired with
  the feeding layer's input (an :class:`InputTap`), spike-triggered input sums and
  covered input elements;
* idempotent figures, which a snapshot cannot difference: the table of the smallest code
  hashes (distinct codes) and the per-row union of the codes of a window. The tap
  gathers them in one *segment* since the last read by any subscriber; a read merges the
  segment into every subscriber's :class:`CodeSink` (a union, so merging twice is
  harmless), so the hook costs the same however many metrics watch the layer.
"""

from __future__ import annotations

import math
import threading
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from snnmetrics.connections import ConnectionRule
from snnmetrics.functional.fanout import require_rule
from snnmetrics.functional.sparsey import (
    EMPTY,
    code_hashes,
    hash_weights,
    receptive_sums,
    smallest_distinct,
)
from snnmetrics.neurons import require_neuron_rule
from snnmetrics.tracking.hub import Tap

__all__ = ["CodeSink", "CodeTap", "CodeTotals", "InputTap"]


class InputTap(Tap):
    """Keeps the last input of a connection layer (a reference, not a copy) and the shape
    of its output, for the neuron layer it feeds; one of each per thread (threads may run
    the layer at once)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule: ConnectionRule = require_rule(module)
        self.n_features = self.rule.feature_dims(module)
        self._last: dict[int, tuple[Tensor, torch.Size]] = {}
        self._add_hook(module.register_forward_hook, self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if not args or not isinstance(args[0], Tensor) or not isinstance(output, Tensor):
            raise TypeError(
                f"{type(module).__name__} must take its input tensor as the first positional "
                "argument and return a tensor for receptive fields to be followed"
            )
        x = args[0]
        if x.ndim > self.n_features and x.shape[0] == 0:
            return  # an empty batch: no call
        self._note_call(x.shape[0] if x.ndim > self.n_features else 1)
        self._last[threading.get_ident()] = (x.detach(), output.shape)

    def last(self) -> tuple[Tensor, torch.Size] | None:
        """This thread's last input of the layer and the shape of the output it gave."""
        return self._last.get(threading.get_ident())


class CodeTotals(NamedTuple):
    """Cumulative additive figures of one neuron layer since its tap was created.

    ``counts`` is float64 ``[NaN readings, covered input elements, input elements]``;
    ``histogram[k]`` counts codes with ``k`` active units, ``sums``/``pairs`` are the
    spike-triggered input sums and their counts per weight tap of the feeding layer (each
    ``None`` until first counted); ``rows`` counts codes.
    """

    counts: Tensor
    histogram: Tensor | None
    sums: Tensor | None
    pairs: Tensor | None
    rows: int


class CodeSink:
    """What one subscriber has not read yet of the idempotent figures.

    ``table`` holds the smallest distinct code hashes, ``union`` the elementwise OR of
    the codes of every call, row by row, and ``ragged`` says that two calls had different
    numbers of rows (their union is undefined).
    """

    __slots__ = ("ragged", "table", "union")

    def __init__(self) -> None:
        self.table: Tensor | None = None
        self.union: Tensor | None = None
        self.ragged = False


class CodeTap(Tap):
    """Reads the binary code of every row of a neuron layer's calls (see module docstring).

    Every call of the layer must have the same units (shape per row).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module)
        self.rule = require_neuron_rule(module)
        self.unit_shape: torch.Size | None = None
        self.rows = 0
        self.capacity = 0  # hashes kept per table; 0 while no subscriber counts codes
        self.source: InputTap | None = None
        self._activity = self._union_wanted = self._average = self._coverage = False
        self._counts: Tensor | None = None
        self._histogram: Tensor | None = None
        self._sums: Tensor | None = None
        self._pairs: Tensor | None = None
        self._weights: Tensor | None = None  # hash weights, float64 on the device
        self._pending: Tensor | None = None  # hashes not yet merged into the segment
        self._fill = 0
        self._segment = CodeSink()
        self._sinks: list[CodeSink] = []
        self._source_calls = 0
        self._add_hook(module.register_forward_hook, self._hook)

    # --- what subscribers ask for -------------------------------------------------------

    def track_activity(self) -> None:
        """Count codes by their number of active units."""
        self._activity = True

    def track_codes(self, capacity: int) -> None:
        """Keep the ``capacity`` smallest distinct code hashes (at least)."""
        if capacity > self.capacity:
            self._spread()
            self.capacity = capacity
            self._pending = None

    def track_union(self) -> None:
        """OR the codes of a window row by row."""
        self._union_wanted = True

    def paired_source(self) -> nn.Module | None:
        """The input layer this tap pairs calls with, while a subscriber still holds it."""
        source = self.source
        if source is None or source.subscribers <= 0:
            return None
        return source.module_ref()

    def track_fields(self, source: InputTap, average: bool, coverage: bool) -> None:
        """Pair each call with the last input of ``source``: spike-triggered input sums
        (``average``) and covered input elements (``coverage``). A tap pairs with one input
        layer at a time (the previous one must have been released)."""
        if self.source is not source:  # the previous one (if any) has no subscriber left
            self.source = source
            self._source_calls = source.calls
            self._average = self._coverage = False
            self._sums = self._pairs = None
        self._average |= average
        self._coverage |= coverage

    def add_sink(self) -> CodeSink:
        """A sink that receives the idempotent figures from now on."""
        self._spread()
        sink = CodeSink()
        self._sinks.append(sink)
        return sink

    def remove_sink(self, sink: CodeSink) -> None:
        self._sinks = [other for other in self._sinks if other is not sink]

    def union_rows(self, sink: CodeSink) -> int | None:
        """Rows of the union ``sink`` would give now: ``None`` if no call ran since its last
        read, -1 if the calls had different numbers of rows."""
        self._spread()
        if sink.ragged:
            return -1
        return None if sink.union is None else sink.union.shape[0]

    # --- the hook ----------------------------------------------------------------------

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        spikes = self.rule.read_spikes(module, output)
        rows = spikes.shape[0] if spikes.ndim else 1
        if rows == 0:
            return  # an empty batch: no call
        self._note_call(rows)
        unit_shape = spikes.shape[1:]
        if self.unit_shape is None:
            self.unit_shape = unit_shape
        elif unit_shape != self.unit_shape:
            raise ValueError(
                f"{type(module).__name__} was called with units {tuple(unit_shape)} per row "
                f"after {tuple(self.unit_shape)}: code metrics need the same units in every call"
            )
        self.rows += rows
        flat = spikes.detach().reshape(rows, -1)
        self._buffers_on(flat.device)
        assert self._counts is not None
        if flat.is_floating_point():
            self._counts[0] += torch.isnan(flat).sum()
        bits = flat != 0
        if self._activity:
            assert self._histogram is not None
            ones = torch.ones(rows, dtype=torch.float64, device=flat.device)
            self._histogram.index_add_(0, bits.sum(1), ones)
        if self.capacity:
            assert self._weights is not None
            self._add_hashes(code_hashes(bits, self._weights))
        if self._union_wanted:
            self._add_union(bits)
        if self.paired_source() is not None:
            self._add_fields(module, spikes)

    def _buffers_on(self, device: torch.device) -> None:
        """Make (or move) the cumulative buffers on ``device``."""
        if self._counts is not None and self._counts.device == device:
            return
        assert self.unit_shape is not None
        units = math.prod(self.unit_shape)
        with torch.inference_mode(False):  # counters must be normal tensors
            if self._counts is None:
                self._counts = torch.zeros(3, dtype=torch.float64, device=device)
                self._histogram = torch.zeros(units + 1, dtype=torch.float64, device=device)
                self._weights = hash_weights(units).to(device, torch.float64)
                return
            self._counts = self._counts.to(device)
            for name in ("_histogram", "_weights", "_sums", "_pairs", "_pending"):
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, value.to(device))
            for sink in (self._segment, *self._sinks):
                if sink.table is not None:
                    sink.table = sink.table.to(device)
                if sink.union is not None:
                    sink.union = sink.union.to(device)

    def _add_hashes(self, hashes: Tensor) -> None:
        rows, capacity = hashes.numel(), self.capacity
        if self._pending is None or self._pending.device != hashes.device:
            self._merge_pending()
            with torch.inference_mode(False):
                self._pending = torch.full((capacity,), EMPTY, device=hashes.device)
        if self._fill + rows > capacity:
            self._merge_pending()
        if rows > capacity:  # one call of more rows than a table: merge it at once
            self._segment.table = _merged(self._segment.table, hashes, capacity)
            return
        self._pending[self._fill : self._fill + rows] = hashes
        self._fill += rows

    def _merge_pending(self) -> None:
        if self._fill and self._pending is not None:
            pending = self._pending[: self._fill]
            self._segment.table = _merged(self._segment.table, pending, self.capacity)
        self._fill = 0

    def _add_union(self, bits: Tensor) -> None:
        segment = self._segment
        if segment.union is None:
            with torch.inference_mode(False):
                segment.union = bits.clone()
        elif segment.union.shape != bits.shape:
            segment.ragged = True
        else:
            segment.union |= bits

    def _add_fields(self, module: nn.Module, spikes: Tensor) -> None:
        source = self.source
        assert source is not None
        layer = source.module_ref()
        last = source.last()
        if source.calls == self._source_calls or layer is None or last is None:
            raise ValueError(
                f"{type(module).__name__} ran without a call of its input layer "
                f"({type(layer).__name__}) since its last call: receptive fields pair every "
                "call of a neuron layer with a call of the layer feeding it"
            )
        self._source_calls = source.calls
        inputs, output_shape = last
        if spikes.shape != output_shape:
            raise ValueError(
                f"{type(module).__name__} gave spikes of shape {tuple(spikes.shape)} after its "
                f"input layer ({type(layer).__name__}) gave {tuple(output_shape)}: "
                "pass sources= to name the layer whose outputs the neurons receive"
            )
        sums, pairs, covered = receptive_sums(
            layer, source.rule, inputs, spikes, self._average, self._coverage
        )
        with torch.inference_mode(False):
            if sums is not None and pairs is not None:
                self._sums = sums.to(spikes.device) + (0 if self._sums is None else self._sums)
                self._pairs = pairs.to(spikes.device) + (0 if self._pairs is None else self._pairs)
        if covered is not None:
            assert self._counts is not None
            self._counts[1] += covered.to(self._counts.device)
            self._counts[2] += inputs.numel()

    # --- reading -----------------------------------------------------------------------

    def totals(self) -> CodeTotals:
        """The cumulative additive figures (copies, safe to keep as a snapshot)."""

        def copy(value: Tensor | None) -> Tensor | None:
            return None if value is None else value.clone()

        counts = self._counts
        return CodeTotals(
            counts.clone() if counts is not None else torch.zeros(3, dtype=torch.float64),
            copy(self._histogram) if self._activity else None,
            copy(self._sums),
            copy(self._pairs),
            self.rows,
        )

    def drain(self, sink: CodeSink) -> CodeSink:
        """What ``sink`` has not read yet of the idempotent figures; empties it."""
        self._spread()
        taken = CodeSink()
        taken.table, taken.union, taken.ragged = sink.table, sink.union, sink.ragged
        sink.table, sink.union, sink.ragged = None, None, False
        return taken

    def _spread(self) -> None:
        """Merge the segment into every sink and start a new one."""
        self._merge_pending()
        segment = self._segment
        for sink in self._sinks:
            if segment.table is not None:
                sink.table = _merged(sink.table, segment.table, self.capacity)
            sink.ragged |= segment.ragged
            if segment.union is None:
                continue
            if sink.union is None:
                sink.union = segment.union
            elif sink.union.shape != segment.union.shape:
                sink.ragged = True
            else:
                sink.union = sink.union | segment.union
        self._segment = CodeSink()


def _merged(table: Tensor | None, hashes: Tensor, capacity: int) -> Tensor:
    values = hashes if table is None else torch.cat([table, hashes])
    with torch.inference_mode(False):
        return smallest_distinct(values, capacity)

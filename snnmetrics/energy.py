"""Energy cost tables: joules per synaptic and neuron operation, and per memory access.

An :class:`EnergyTable` prices the three kinds of operation the metrics count: an
accumulate (AC, a synaptic operation on a spike), a multiply-accumulate (MAC, a
synaptic operation on a graded value) and a neuron operation (one of the elementwise
operations of a membrane update, see :mod:`snnmetrics.neurons`). The built-in tables are
Horowitz's 45 nm figures (M. Horowitz, "Computing's energy problem (and what we can do
about it)", ISSCC 2014, 0.9 V), the figures nearly every SNN-versus-ANN estimate uses:

==================== ======= ======= ======= ========
pJ per operation      int8    int32   fp16    fp32
==================== ======= ======= ======= ========
add = AC              0.03    0.1     0.4     0.9
multiply              0.2     3.1     1.1     3.7
MAC = multiply + add  0.23    3.2     1.5     4.6
neuron op = MAC / 2   0.115   1.6     0.75    2.3
==================== ======= ======= ======= ========

**What a neuron operation costs.** The neuron-operation counts (NeuroBench 2.3.0's, and
ours for the types it lacks) count the elementwise multiplies and adds of a membrane
update without saying which is which. In the snnTorch state equations they come in
pairs: ``U = beta * U + I`` is a multiply and an add, a subtract reset is ``R * theta``
and its subtraction, a synaptic current ``S = alpha * S + I`` another multiply and add.
So ``Leaky`` (4 operations) is two multiplies and two adds and ``Synaptic`` (6) three of
each, and pricing every neuron operation at half a MAC, ``(multiply + add) / 2``, gives
exactly their cost; for the other types it is the average of the two. Pass your own
:class:`EnergyTable` to price them otherwise.

A :class:`MemoryModel` adds the cost of memory accesses in the spirit of Lemaire et al.
(see its docstring). Every figure built from these tables is an *estimate* from operation
counts and published per-operation energies, not a measurement of any hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "HOROWITZ_45NM",
    "EnergyTable",
    "MemoryModel",
    "energy_table",
    "energy_tables",
    "register_table",
    "sram_access_joules",
]

_PICO = 1e-12


def _check_joules(owner: str, field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{field} must be a number of joules, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{owner}.{field} must be a finite number of joules >= 0, got {value}")
    return float(value)


@dataclass(frozen=True)
class EnergyTable:
    """Joules per operation of one technology (a named, cited cost table).

    Attributes:
        name: the table's name (the key it is registered under).
        ac_joules: one accumulate: a synaptic operation on an input in {-1, 0, 1}.
        mac_joules: one multiply-accumulate: a synaptic operation on a graded input.
        neuron_op_joules: one neuron operation (an elementwise multiply or add of a
            membrane update, as :class:`snnmetrics.NeuronOperations` counts them).
        source: where the numbers come from.

    Example:
        >>> table = EnergyTable("my_chip", ac_joules=0.5e-12, mac_joules=2e-12,
        ...                     neuron_op_joules=1e-12, source="my measurements")
        >>> table.mac_joules / table.ac_joules
        4.0
    """

    name: str
    ac_joules: float
    mac_joules: float
    neuron_op_joules: float
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"EnergyTable.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.source, str):
            raise TypeError(f"EnergyTable.source must be a string, got {self.source!r}")
        for field in ("ac_joules", "mac_joules", "neuron_op_joules"):
            value = _check_joules("EnergyTable", field, getattr(self, field))
            object.__setattr__(self, field, value)


def _horowitz(precision: str, add: float, multiply: float, mac: float) -> EnergyTable:
    return EnergyTable(
        name=f"horowitz45nm_{precision}",
        ac_joules=add,
        mac_joules=mac,
        neuron_op_joules=mac / 2,
        source=(
            f"M. Horowitz, Computing's energy problem (and what we can do about it), ISSCC 2014: "
            f"45 nm, 0.9 V, {precision} add {add / _PICO:g} pJ (AC), multiply "
            f"{multiply / _PICO:g} pJ, MAC = multiply + add {mac / _PICO:g} pJ; neuron op = "
            "MAC / 2 (a multiply and an add per two operations of an snnTorch membrane update)"
        ),
    )


HOROWITZ_45NM: dict[str, EnergyTable] = {
    table.name: table
    for table in (
        _horowitz("int8", add=0.03e-12, multiply=0.2e-12, mac=0.23e-12),
        _horowitz("int32", add=0.1e-12, multiply=3.1e-12, mac=3.2e-12),
        _horowitz("fp16", add=0.4e-12, multiply=1.1e-12, mac=1.5e-12),
        _horowitz("fp32", add=0.9e-12, multiply=3.7e-12, mac=4.6e-12),
    )
}
"""Horowitz (ISSCC 2014) 45 nm tables by name: ``horowitz45nm_int8``, ``_int32``,
``_fp16``, ``_fp32``."""

_TABLES: dict[str, EnergyTable] = dict(HOROWITZ_45NM)


def register_table(table: EnergyTable) -> None:
    """Register (or replace) a table, so that metrics can name it.

    Example:
        >>> register_table(EnergyTable("unit", ac_joules=1.0, mac_joules=1.0,
        ...                            neuron_op_joules=1.0))
        >>> energy_table("unit").mac_joules
        1.0
    """
    if not isinstance(table, EnergyTable):
        raise TypeError(f"table must be an EnergyTable, got {type(table).__name__}")
    _TABLES[table.name] = table


def energy_tables() -> dict[str, EnergyTable]:
    """Every registered table by name (a copy)."""
    return dict(_TABLES)


def energy_table(table: str | EnergyTable) -> EnergyTable:
    """The table named ``table``, or ``table`` itself if it is an :class:`EnergyTable`.

    Raises a ``ValueError`` listing the known names for an unknown name, a ``TypeError``
    for anything but a name or a table.

    Example:
        >>> energy_table("horowitz45nm_int8").ac_joules
        3e-14
    """
    if isinstance(table, EnergyTable):
        return table
    if not isinstance(table, str):
        raise TypeError(
            f"table must be a table name or an EnergyTable, got {type(table).__name__}"
        )
    found = _TABLES.get(table)
    if found is None:
        raise ValueError(
            f"unknown energy table {table!r}; known tables: {', '.join(sorted(_TABLES))} "
            "(or pass an snnmetrics.EnergyTable)"
        )
    return found


# Lemaire et al.'s SRAM access energy as qualia-plugin-snn fits it: pJ per access of a
# memory of `bits` bits, = slope * bits + intercept.
_SRAM_PJ_PER_BIT = 1.09e-5
_SRAM_PJ_INTERCEPT = 13.2


def sram_access_joules(bits: float) -> float:
    """Joules per access of an SRAM holding ``bits`` bits (Lemaire et al.'s linear fit).

    ``E = 1.09e-5 pJ * bits + 13.2 pJ``, the fit of Horowitz's 45 nm SRAM read energies
    that qualia-plugin-snn uses for Lemaire et al. (ICONIP 2022): about 13.9 pJ for 8 KB,
    16.1 pJ for 32 KB and 104.6 pJ for 1 MB, against Horowitz's 10, 20 and 100 pJ per
    64-bit word.

    Example:
        >>> round(sram_access_joules(8 * 1024 * 8) * 1e12, 2)  # 8 KB
        13.91
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, float)):
        raise TypeError(f"bits must be a number, got {bits!r}")
    if not (math.isfinite(bits) and bits >= 0):
        raise ValueError(f"bits must be a finite number >= 0, got {bits}")
    return (_SRAM_PJ_PER_BIT * bits + _SRAM_PJ_INTERCEPT) * _PICO


@dataclass(frozen=True)
class MemoryModel:
    """Memory-access energy in the spirit of Lemaire et al. (an estimate, not a measurement).

    Lemaire, Cordone, Castagnetti, Novac, Courtois, Miramond, "An analytical estimation
    of spiking neural networks energy efficiency", ICONIP 2022 (arXiv 2210.13107), price
    each access to the memories of weights, membrane potentials and spikes. This model
    keeps their structure and counts the accesses from what the hooks see, per sample:

    * **weights**: every effective synaptic operation reads its weight once
      (Lemaire's event-driven weight reads ``theta_in * fanout``, here with the exact
      fanout): ``synops * weight_joules``;
    * **membrane**: every effective synaptic operation reads and writes the membrane
      (or accumulator) it adds into, and every membrane update reads and writes the
      neuron's membrane once (the leak, threshold and reset step):
      ``2 * (synops + membrane_updates) * membrane_joules``;
    * **spikes**: every spike a watched neuron emits is written once to the layer's
      spike memory and read once by the layer it feeds:
      ``2 * spikes * spike_joules``. Spikes the network receives as input come from
      outside the watched neurons and are not counted.

    Bias reads, address computation and the leak's own arithmetic (Lemaire's ``E_addr``
    and bias terms) are left out; the leak's arithmetic is in the neuron operations.
    The defaults price every access at 10 pJ, Horowitz's (ISSCC 2014) 45 nm read of a
    64-bit word from an 8 KB SRAM, the cheapest memory he lists: an optimistic figure
    for a network whose weights do not fit in 8 KB. :meth:`sram` sizes each memory with
    :func:`sram_access_joules` instead.

    Example:
        >>> model = MemoryModel.sram(weight_bits=100_000 * 8, membrane_bits=1_000 * 16,
        ...                          spike_bits=1_000)
        >>> round(model.weight_joules * 1e12, 2), round(model.spike_joules * 1e12, 2)
        (21.92, 13.21)
    """

    weight_joules: float = 10 * _PICO
    membrane_joules: float = 10 * _PICO
    spike_joules: float = 10 * _PICO
    source: str = (
        "Horowitz, ISSCC 2014: 45 nm SRAM read of a 64-bit word from 8 KB, 10 pJ per access"
    )

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            raise TypeError(f"MemoryModel.source must be a string, got {self.source!r}")
        for field in ("weight_joules", "membrane_joules", "spike_joules"):
            value = _check_joules("MemoryModel", field, getattr(self, field))
            object.__setattr__(self, field, value)

    @classmethod
    def sram(cls, weight_bits: float, membrane_bits: float, spike_bits: float) -> MemoryModel:
        """Per-access costs of three SRAMs of the given sizes (:func:`sram_access_joules`).

        Args:
            weight_bits: size of the weight memory (e.g. parameters x bits per weight).
            membrane_bits: size of the membrane memory (neurons x bits per state).
            spike_bits: size of the spike memory (e.g. one bit per neuron).
        """
        return cls(
            weight_joules=sram_access_joules(weight_bits),
            membrane_joules=sram_access_joules(membrane_bits),
            spike_joules=sram_access_joules(spike_bits),
            source=(
                "Lemaire et al. (ICONIP 2022) SRAM energy, qualia-plugin-snn's linear fit "
                f"1.09e-5 pJ/bit * size + 13.2 pJ per access; weights {weight_bits:g} bits, "
                f"membranes {membrane_bits:g} bits, spikes {spike_bits:g} bits"
            ),
        )

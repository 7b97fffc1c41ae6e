"""Registry of neuron types: how to read a module's spikes and membrane, and its op cost.

A *neuron* here is any module whose output counts as an activation: spiking neurons
(snnTorch ``Leaky``, ``Synaptic``, ``Lapicque``, ``Alpha``, ``RLeaky``, ``RSynaptic``) and,
as in NeuroBench, ``nn.ReLU`` and ``nn.Sigmoid``. For each type the registry holds one
:class:`NeuronRule`, which says

* how to get the spike (activation) tensor, batch first, from the module's output;
* for neurons with a membrane, how to read it just before and just after a call;
* how many operations one membrane update costs.

Adding a type is one :func:`register_neuron` call. snnTorch neurons are read the same way
with ``init_hidden=True`` (the module keeps its state and returns the spikes, or the spikes
and its state when ``output=True``) and ``init_hidden=False`` (the state goes in as
arguments and the new state comes back with the spikes).

Operation costs of snnTorch neurons (:data:`SNNTORCH_COSTS`) are elementwise arithmetic
operations per neuron and step, counted on snnTorch's state equations the way NeuroBench
2.3.0 counts them (its table covers ``Leaky``, ``Synaptic``, ``Lapicque`` and ``Alpha``
with ``subtract``/``zero`` reset; the other entries are ours):

* ``Leaky``: ``U = beta * U + I`` is 2; a subtract reset (``- R * theta``) or a zero reset
  (``(1 - R) * U``) adds 2: 4 / 4; no reset: 2.
* ``Synaptic``: ``S = alpha * S + I`` and ``U = beta * U + S`` are 4; a subtract reset adds
  2 on ``U``, a zero reset 2 on each of ``S`` and ``U``: 6 / 8; no reset: 4.
* ``Lapicque``: ``U = I * R * (1 / (R C)) * dt + (1 - dt / (R C)) * U`` is 9; either reset
  adds 2: 11 / 11; no reset: 9.
* ``Alpha``: the two synaptic currents, the time constant and ``U`` are 9; the subtract
  reset computes three reset terms and applies them (9), the zero reset recomputes the
  state (9) and applies three resets (6): 18 / 24; no reset: 9.
* ``RLeaky`` / ``RSynaptic``: as ``Leaky`` / ``Synaptic`` plus 1 to add the recurrent
  current: 5 / 5 (no reset 3) and 7 / 9 (no reset 5). An all-to-all recurrence is an
  ``nn.Linear``/``nn.Conv2d`` whose operations are synaptic (see
  :class:`~snnmetrics.SynapticOperations`); a one-to-one recurrence (``all_to_all=False``)
  multiplies each neuron's last spike by ``V``, one more operation per neuron: 6 / 6 and
  8 / 10.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import snntorch as snn
from torch import Tensor, nn

__all__ = [
    "SNNTORCH_COSTS",
    "NeuronRule",
    "find_neurons",
    "neuron_cost",
    "neuron_rule",
    "register_neuron",
    "require_neuron_rule",
]

MembraneBefore = Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], "Tensor | None"]
Costs = Mapping["type[nn.Module] | str", "float | Mapping[str, float]"]


@dataclass(frozen=True)
class NeuronRule:
    """How the neuron metrics read one neuron type.

    Attributes:
        spikes: ``spikes(module, output)`` returns the spike (activation) tensor of a call,
            batch first; every other dimension indexes a neuron.
        membrane_before: ``membrane_before(module, args, kwargs)`` returns the membrane the
            call starts from, or ``None`` if the call starts a fresh state. It runs before
            the call; the module must not change that tensor in place.
        membrane_after: ``membrane_after(module, output)`` returns the membrane after the
            call. Give both membrane readers or neither (a plain activation).
        cost: operations per membrane update: a number, or a function of the module
            (for costs that depend on its reset mechanism, say); ``None`` if unknown.
        spiking: whether the outputs are spikes (firing rates make sense); ``False`` for
            activations such as ``nn.ReLU``.
    """

    spikes: Callable[[nn.Module, Any], Tensor]
    membrane_before: MembraneBefore | None = None
    membrane_after: Callable[[nn.Module, Any], Tensor] | None = None
    cost: float | Callable[[nn.Module], float] | None = None
    spiking: bool = True

    @property
    def has_membrane(self) -> bool:
        return self.membrane_after is not None


_RULES: dict[type[nn.Module], NeuronRule] = {}


def register_neuron(layer_type: type[nn.Module], rule: NeuronRule) -> None:
    """Register (or replace) how a neuron type is read.

    Subclasses of ``layer_type`` use the rule too unless they have their own.

    Example:
        >>> import torch
        >>> from snnmetrics import NeuronRule, register_neuron
        >>> class Heaviside(torch.nn.Module):
        ...     def forward(self, x):
        ...         return (x > 0).float()
        >>> register_neuron(Heaviside, NeuronRule(spikes=lambda module, output: output))
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
    if not isinstance(rule, NeuronRule):
        raise TypeError(f"rule must be a NeuronRule, got {type(rule).__name__}")
    if (rule.membrane_before is None) != (rule.membrane_after is None):
        raise ValueError("give a NeuronRule both membrane_before and membrane_after, or neither")
    _RULES[layer_type] = rule


def neuron_rule(layer: nn.Module) -> NeuronRule | None:
    """The rule for ``layer`` (nearest registered base class), or ``None``."""
    for cls in type(layer).__mro__:
        rule = _RULES.get(cls)
        if rule is not None:
            return rule
    return None


def _is_unregistered_neuron(layer: nn.Module) -> bool:
    """An snnTorch neuron (any ``snntorch._neurons`` class) that has no rule."""
    looks_like_one = isinstance(layer, snn.SpikingNeuron) or type(layer).__module__.startswith(
        "snntorch._neurons"
    )
    return looks_like_one and neuron_rule(layer) is None


def _how_to_register(layer: nn.Module, name: str) -> str:
    cls = type(layer)
    return (
        f"{cls.__module__}.{cls.__qualname__} (layer {name!r}) is a neuron type snnmetrics does "
        "not know. Register it once before creating the metric, e.g.\n"
        "    snnmetrics.register_neuron(\n"
        f"        {cls.__name__},\n"
        "        snnmetrics.NeuronRule(\n"
        "            spikes=lambda module, output: output[0],\n"
        "            membrane_before=lambda module, args, kwargs: module.mem,\n"
        "            membrane_after=lambda module, output: output[-1],\n"
        "            cost=4,  # operations per membrane update\n"
        "        ),\n"
        "    )"
    )


def require_neuron_rule(layer: nn.Module) -> NeuronRule:
    """The rule for ``layer``, or a ``TypeError`` that shows how to register one."""
    rule = neuron_rule(layer)
    if rule is None:
        raise TypeError(_how_to_register(layer, type(layer).__name__))
    return rule


def find_neurons(model: nn.Module) -> list[tuple[str, nn.Module, NeuronRule]]:
    """Every registered neuron of ``model`` as ``(qualified name, module, rule)``.

    Modules inside a neuron are part of it and are not listed (as in NeuroBench). An
    snnTorch neuron of a type with no rule raises a ``TypeError`` that shows how to
    register it.
    """
    found: list[tuple[str, nn.Module, NeuronRule]] = []
    inside: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix) for prefix in inside):
            continue
        rule = neuron_rule(module)
        if rule is None:
            if _is_unregistered_neuron(module):
                raise TypeError(_how_to_register(module, name))
            continue
        found.append((name, module, rule))
        inside.append(f"{name}." if name else "")
    return found


def neuron_cost(layer: nn.Module, costs: Costs | None = None) -> float:
    """Operations per membrane update of ``layer``.

    ``costs`` overrides the registered cost: it maps a neuron type (the class, or its
    name as in NeuroBench's table) to a number, or to a dict from reset mechanism
    (``layer.reset_mechanism``) to a number; mechanisms it leaves out keep the registered
    cost. Raises a ``ValueError`` naming the type if no cost is known.

    Example:
        >>> import snntorch as snn
        >>> neuron_cost(snn.Synaptic(alpha=0.9, beta=0.8, reset_mechanism="zero"))
        8.0
        >>> neuron_cost(snn.Leaky(beta=0.9), costs={"Leaky": {"subtract": 3}})
        3.0
    """
    mechanism = str(getattr(layer, "reset_mechanism", ""))
    for cls in type(layer).__mro__:
        override: Any = None
        if costs is not None:
            override = costs.get(cls, costs.get(cls.__name__))
        if isinstance(override, Mapping):
            override = override.get(mechanism)
        if override is not None:
            return _check_cost(float(override), layer)
        if cls in _RULES:
            break
    rule = require_neuron_rule(layer)
    cost = rule.cost(layer) if callable(rule.cost) else rule.cost
    if cost is None:
        name = type(layer).__name__
        raise ValueError(
            f"no operation cost is known for neuron type {name}: pass costs={{{name!r}: ...}} "
            "or register it with snnmetrics.register_neuron(..., NeuronRule(..., cost=...))"
        )
    return _check_cost(float(cost), layer)


def _check_cost(cost: float, layer: nn.Module) -> float:
    if not cost >= 0 or cost == float("inf"):
        raise ValueError(
            f"the operation cost of {type(layer).__name__} must be a finite number >= 0, got {cost}"
        )
    return cost


# --- built-in types -------------------------------------------------------------------

SNNTORCH_COSTS: dict[str, dict[str, float]] = {
    "Leaky": {"subtract": 4, "zero": 4, "none": 2},
    "Synaptic": {"subtract": 6, "zero": 8, "none": 4},
    "Lapicque": {"subtract": 11, "zero": 11, "none": 9},
    "Alpha": {"subtract": 18, "zero": 24, "none": 9},
    "RLeaky": {"subtract": 5, "zero": 5, "none": 3},
    "RSynaptic": {"subtract": 7, "zero": 9, "none": 5},
}
"""Operations per membrane update of snnTorch neurons, by type and reset mechanism
(derivation in the module docstring); one-to-one recurrent neurons add 1."""


def _output_spikes(module: nn.Module, output: Any) -> Tensor:
    # init_hidden=True and output=False return the spikes alone, every other mode a tuple
    return output[0] if isinstance(output, tuple) else output


def _snntorch_rule(type_name: str, n_states: int) -> NeuronRule:
    """The rule of an snnTorch neuron ``forward(input_, *states)``, membrane last of states."""

    def before(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
        mem = None
        if not module.init_hidden:
            mem = kwargs.get("mem", args[n_states] if len(args) > n_states else None)
        # snnTorch >= 0.8 also keeps the state it was last given or computed
        return mem if mem is not None else getattr(module, "mem", None)

    def after(module: nn.Module, output: Any) -> Tensor:
        return output[-1] if isinstance(output, tuple) else module.mem  # type: ignore[return-value]

    def cost(module: nn.Module) -> float:
        one_to_one = getattr(module, "all_to_all", True) is False
        return SNNTORCH_COSTS[type_name][str(module.reset_mechanism)] + (1 if one_to_one else 0)

    return NeuronRule(
        spikes=_output_spikes, membrane_before=before, membrane_after=after, cost=cost
    )


for _type, _states in (
    (snn.Leaky, 1),
    (snn.Synaptic, 2),
    (snn.Lapicque, 1),
    (snn.Alpha, 3),
    (snn.RLeaky, 2),
    (snn.RSynaptic, 3),
):
    register_neuron(_type, _snntorch_rule(_type.__name__, _states))

for _activation in (nn.ReLU, nn.Sigmoid):
    register_neuron(_activation, NeuronRule(spikes=lambda module, output: output, spiking=False))

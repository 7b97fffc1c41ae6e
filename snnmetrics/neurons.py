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

Neurons of spikingjelly, sinabs and norse are registered too, the first time a rule is
looked up after the user imported the framework (importing snnmetrics imports none of
them); see *Other frameworks* below.

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

Other frameworks
----------------

Their costs count, the same way, every arithmetic operator of the per-neuron update
equations each framework documents, constants included (NeuroBench counts ``1 / (R C)``
in ``Lapicque``'s); a constant defined apart from the update (sinabs' ``alpha =
exp(-1 / tau)``, spikingjelly's ``1 / tau = sigmoid(w)`` of ``ParametricLIFNode``) is
computed once per layer and call, not per neuron, and is not counted. The threshold
comparison that makes the spike is not counted, as in NeuroBench's table.

* spikingjelly (``activation_based``; every ``BaseNode`` and ``SimpleBaseNode`` is read:
  spikes are the output, the membrane is ``v``). Charge ``IFNode``: ``H = V + X`` is 1;
  ``LIFNode`` (either ``decay_input``) and ``ParametricLIFNode``: ``H = V + (X - (V -
  V_reset)) / tau`` or ``H = V - (V - V_reset) / tau + X`` is 4. Reset: soft
  (``v_reset=None``) ``V = H - S * V_th`` is 2; hard ``V = S * V_reset + (1 - S) * H`` is
  4. ``IFNode`` 5 (hard) / 3 (soft); ``LIFNode``, ``ParametricLIFNode`` 8 / 6. The
  pure-PyTorch ``SimpleIFNode`` and ``SimpleLIFNode`` compute the same equations and cost
  the same.
* sinabs (``IAF``, ``LIF``, their ``Squeeze`` and ``Recurrent`` variants; ``ALIF`` is read
  but has no cost; ``ExpLeak`` is read as a non-spiking activation). ``IAF``: ``V = V + I``
  is 1; ``LIF``: ``V = alpha * V + (1 - alpha) * I`` is 4 (``norm_input=True``, the
  default) or ``V = alpha * V + I`` 2. A synaptic current (``tau_syn``) adds ``I_syn =
  alpha_syn * (I_syn + X)``: 2; a recurrent variant adds its recurrent input to ``X``: 1;
  ``min_v_mem`` adds ``max(V, V_min)``: 1. Reset ``MembraneSubtract``: ``V - S * V_th``, 2;
  ``MembraneReset``: ``V * (S == 0) + V_reset``, 3; no ``spike_fn``: 0. Defaults: ``IAF``
  3, ``LIF`` 6. Spikes are the output (sinabs' ``MultiSpike`` may emit several per step;
  a step with any is one nonzero output); the membrane is ``v_mem``.
* norse (every ``SNNCell``/``SNNRecurrentCell`` and the sequence modules ``SNN``/
  ``SNNRecurrent``: spikes are ``output[0]``, the membrane is the state's ``v``;
  ``LI``/``LICell``/``LIBoxCell`` are read as non-spiking activations). ``LIFCell``/``LIF``
  (one Euler step): ``I = I + X`` 1, ``V = V + dt * tau_mem_inv * ((V_leak - V) + I)`` 5,
  ``I = I - dt * tau_syn_inv * I`` 3, reset ``V = (1 - Z) * V + Z * V_reset`` 4: 13.
  ``LIFRecurrentCell``/``LIFRecurrent`` add input and recurrent currents to ``I`` (2
  instead of 1): 14. ``IAFCell``/``IAF``: ``V = V + X`` 1 and the reset 4: 5.
  ``LIFBoxCell``: ``V = V + dt * tau_mem_inv * (X + V_leak - V)`` 5, reset to a value 4
  (9) or ``(1 - Z) * V + Z * (V - V_th)`` 5 (10).

Other types of these frameworks have no built-in cost (``NeuronOperations(costs=...)``
gives one), and a neuron type of theirs with no rule at all raises a ``TypeError`` that
shows how to register it, as an unknown snnTorch type does.

Several steps in one call
-------------------------

spikingjelly in multi-step mode (input ``[T, B, ...]``), sinabs (``[B, T, ...]``, squeezed
``[B * T, ...]``) and norse's sequence modules (``[T, B, ...]``) run a whole sequence in
one call. Their rules say how many steps a call ran (:attr:`NeuronRule.steps`), so a call
counts ``T * B`` sample-steps for firing rates and sparsity and ``T * B * N`` neuron-steps
for dense neuron operations. Membrane updates need the membrane after every step, which
these modules keep on request: spikingjelly with ``store_v_seq=True`` (``v_seq``), sinabs
and norse with ``record_states=True``. Then the count is exact: every neuron at the first
step of an update window, then those whose membrane changed from one step to the next,
the same as stepping the model one step per call. Without it, only the membrane after the
call can be seen, and every neuron counts at every step of the call (an upper bound, equal
to the dense count); a warning says so once per layer. That is also the case of sinabs'
recurrent layers and ``ALIF``, whose recordings (sinabs 3.1.3) hold each step's state
after the next step overwrote it, and are not used.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import snntorch as snn
from torch import Tensor, nn

from snnmetrics.registry import TypeRegistry

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
            (for costs that depend on its reset mechanism, say; it may return ``None`` for
            modules it has no cost for); ``None`` if unknown.
        spiking: whether the outputs are spikes (firing rates make sense); ``False`` for
            activations such as ``nn.ReLU``.
        steps: for a neuron that can run several timesteps in one call,
            ``steps(module, output)`` returns how many the call ran. ``spikes`` then returns
            the spikes of every step with the (step, sample) rows flattened into dim 0, in
            either order; ``membrane_before`` the state ``[samples, ...]`` the call starts
            from; ``membrane_after`` the state after every step, time first
            (``[steps, samples, ...]``), or the state after the call where the module keeps
            only that. ``None`` (the default): one step per call.

    Example:
        A neuron that runs a whole sequence ``[T, B, N]`` in one call:

        >>> import torch
        >>> from snnmetrics import FiringRate, NeuronRule, register_neuron
        >>> class Integrator(torch.nn.Module):
        ...     def forward(self, x):
        ...         return (x.cumsum(0) > 1).float()
        >>> register_neuron(Integrator, NeuronRule(
        ...     spikes=lambda module, output: output.flatten(0, 1),
        ...     steps=lambda module, output: output.shape[0]))
        >>> net = torch.nn.Sequential(Integrator())
        >>> x = torch.tensor([0.5, 0.0]).expand(4, 3, 2)  # T=4 steps, B=3 samples, N=2
        >>> with FiringRate(net) as rates:
        ...     _ = net(x)  # neuron 0 is above 1 from the third step on
        ...     rates.update(batch_size=3)  # dim 0 is T: give the batch size
        ...     rates.compute()["0"]["rates"].tolist()
        [0.5, 0.0]
    """

    spikes: Callable[[nn.Module, Any], Tensor]
    membrane_before: MembraneBefore | None = None
    membrane_after: Callable[[nn.Module, Any], Tensor] | None = None
    cost: float | Callable[[nn.Module], float | None] | None = None
    spiking: bool = True
    steps: Callable[[nn.Module, Any], int] | None = None

    @property
    def has_membrane(self) -> bool:
        return self.membrane_after is not None

    def read_spikes(self, module: nn.Module, output: Any) -> Tensor:
        """The spikes of a call, or a ``TypeError`` if the rule did not give a tensor."""
        spikes = self.spikes(module, output)
        if not isinstance(spikes, Tensor):
            raise _not_a_tensor(spikes, "spikes", module)
        return spikes

    def read_membrane(self, module: nn.Module, output: Any) -> Tensor:
        """The membrane after a call, or a ``TypeError`` if the rule did not give a tensor."""
        assert self.membrane_after is not None
        membrane = self.membrane_after(module, output)
        if not isinstance(membrane, Tensor):
            raise _not_a_tensor(membrane, "membrane", module)
        return membrane


def _not_a_tensor(value: object, what: str, module: nn.Module) -> TypeError:
    return TypeError(
        f"the {what} of {type(module).__name__} must be a tensor, got "
        f"{type(value).__name__}: register a NeuronRule that reads it"
    )


REGISTRY: TypeRegistry[NeuronRule] = TypeRegistry()


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
    if not isinstance(rule, NeuronRule):
        raise TypeError(f"rule must be a NeuronRule, got {type(rule).__name__}")
    if (rule.membrane_before is None) != (rule.membrane_after is None):
        raise ValueError("give a NeuronRule both membrane_before and membrane_after, or neither")
    REGISTRY.register(layer_type, rule)


def neuron_rule(layer: nn.Module) -> NeuronRule | None:
    """The rule for ``layer`` (nearest registered base class), or ``None``."""
    return REGISTRY.lookup(layer)


def _is_unregistered_neuron(layer: nn.Module) -> bool:
    """A spiking neuron of a known framework that has no rule: any ``snntorch._neurons``
    class, any spikingjelly ``activation_based.neuron`` module but the non-spiking
    read-outs, any sinabs ``StatefulLayer``."""
    if neuron_rule(layer) is not None:
        return False
    cls = type(layer)
    if isinstance(layer, snn.SpikingNeuron) or cls.__module__.startswith("snntorch._neurons"):
        return True
    if cls.__module__.startswith("spikingjelly.activation_based.neuron"):
        return "NonSpiking" not in cls.__name__
    stateful = getattr(sys.modules.get("sinabs.layers"), "StatefulLayer", None)
    return isinstance(stateful, type) and isinstance(layer, stateful)


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
        "    )\n"
        "(a neuron that runs several timesteps in one call also gives steps=, see "
        "snnmetrics.NeuronRule)"
    )


def require_neuron_rule(layer: nn.Module) -> NeuronRule:
    """The rule for ``layer``, or a ``TypeError`` that shows how to register one."""
    rule = neuron_rule(layer)
    if rule is None:
        raise TypeError(_how_to_register(layer, type(layer).__name__))
    return rule


def find_neurons(model: nn.Module) -> list[tuple[str, nn.Module, NeuronRule]]:
    """Every registered neuron of ``model`` as ``(qualified name, module, rule)``.

    Modules inside a neuron are part of it and are not listed (as in NeuroBench). A
    spiking neuron of snnTorch, spikingjelly or sinabs of a type with no rule raises a
    ``TypeError`` that shows how to register it.
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
    for cls, registered in REGISTRY.lineage(layer):
        override: Any = None
        if costs is not None:
            override = costs.get(cls, costs.get(cls.__name__))
        if isinstance(override, Mapping):
            override = override.get(mechanism)
        if override is not None:
            return _check_cost(float(override), layer)
        if registered is not None:
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


# ----------------------------------------------------------------------------- frameworks
# Costs and their derivations: module docstring ("Other frameworks"). A cost is given to the
# framework's own classes only: a subclass of the user's may change the equations.


def _framework_cost(module: nn.Module, framework: str, table: Mapping[str, float]) -> float | None:
    """``table[type name]`` if ``module`` is of a class that ``framework`` itself defines."""
    cls = type(module)
    return table.get(cls.__name__) if cls.__module__.startswith(framework + ".") else None


# --- spikingjelly (activation_based): spikes are the output, the membrane is ``v``

_SPIKINGJELLY_CHARGE = {
    "IFNode": 1,
    "SimpleIFNode": 1,
    "LIFNode": 4,
    "SimpleLIFNode": 4,
    "ParametricLIFNode": 4,
}


def _spikingjelly_cost(module: nn.Module) -> float | None:
    charge = _framework_cost(module, "spikingjelly", _SPIKINGJELLY_CHARGE)
    if charge is None:
        return None
    return charge + (2 if module.v_reset is None else 4)  # soft / hard reset


def _multi_step(module: nn.Module) -> bool:
    return module.step_mode == "m"  # a call carries [T, B, ...]


def _spikingjelly_spikes(module: nn.Module, output: Any) -> Tensor:
    if _multi_step(module) and isinstance(output, Tensor):
        return output.flatten(0, 1)
    return output


def _spikingjelly_steps(module: nn.Module, output: Any) -> int:
    return int(output.shape[0]) if _multi_step(module) else 1


def _spikingjelly_before(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Tensor | None:
    v = getattr(module, "v", None)  # a number (v_reset) until the first call after a reset
    return v if isinstance(v, Tensor) else None


def _spikingjelly_after(module: nn.Module, output: Any) -> Tensor:
    # store_v_seq=True keeps the membrane of every step of a multi-step call in v_seq
    v_seq = getattr(module, "v_seq", None) if _multi_step(module) else None
    return v_seq if isinstance(v_seq, Tensor) else cast(Tensor, module.v)


_SPIKINGJELLY = NeuronRule(
    spikes=_spikingjelly_spikes,
    membrane_before=_spikingjelly_before,
    membrane_after=_spikingjelly_after,
    cost=_spikingjelly_cost,
    steps=_spikingjelly_steps,
)


def _register_spikingjelly(neuron_module: object) -> None:
    for name in ("BaseNode", "SimpleBaseNode"):
        REGISTRY.register_from(neuron_module, name, _SPIKINGJELLY)


# --- sinabs: [B, T, ...] per call (squeezed: [B * T, ...]); the membrane is ``v_mem``

_SINABS_TYPES = ("IAF", "IAFSqueeze", "IAFRecurrent", "LIF", "LIFSqueeze", "LIFRecurrent")
_SINABS_RESETS = {"MembraneSubtract": 2, "MembraneReset": 3}


def _sinabs_cost(module: nn.Module) -> float | None:
    cls = type(module)
    if not cls.__module__.startswith("sinabs.") or cls.__name__ not in _SINABS_TYPES:
        return None
    reset: float | None = 0
    if module.spike_fn is not None:
        reset_type = type(module.reset_fn)
        reset = (
            _SINABS_RESETS.get(reset_type.__name__)
            if reset_type.__module__.startswith("sinabs.")
            else None
        )
    if reset is None:
        return None
    charge = 1 if cls.__name__.startswith("IAF") else (4 if module.norm_input else 2)
    synaptic = 0 if module.alpha_syn_calculated is None else 2
    recurrent = 1 if cls.__name__.endswith("Recurrent") else 0
    floor = 0 if module.min_v_mem is None else 1
    return charge + synaptic + recurrent + floor + reset


def _sinabs_before(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Tensor | None:
    v = getattr(module, "v_mem", None)  # empty until the first call
    return v if isinstance(v, Tensor) and v.numel() else None


def _register_sinabs(layers: Any) -> None:
    squeezed, recorded_right = layers.SqueezeMixin, layers.LIF
    recorded_wrong = layers.LIFRecurrent

    def after(module: nn.Module, output: Any) -> Tensor:
        # record_states=True keeps every step's states, [B, T, ...]. sinabs 3.1.3 keeps a
        # copy per step only in its feed-forward LIF family; the recurrent variants and ALIF
        # keep each step's state dict, which the next step overwrites: not used
        recorded = getattr(module, "recordings", {}).get("v_mem")
        right = isinstance(module, recorded_right) and not isinstance(module, recorded_wrong)
        if right and isinstance(recorded, Tensor):
            return recorded.transpose(0, 1)
        return cast(Tensor, module.v_mem)

    def spikes(module: nn.Module, output: Any) -> Tensor:
        return output if isinstance(module, squeezed) else output.flatten(0, 1)

    def steps(module: nn.Module, output: Any) -> int:
        if isinstance(module, squeezed):  # sample-major rows: v_mem has one per sample
            return int(output.shape[0]) // int(cast(Tensor, module.v_mem).shape[0])
        return int(output.shape[1])

    def rule(cost: Callable[[nn.Module], float | None] | None) -> NeuronRule:
        return NeuronRule(
            spikes=spikes,
            membrane_before=_sinabs_before,
            membrane_after=after,
            cost=cost,
            steps=steps,
        )

    REGISTRY.register_from(layers, "LIF", rule(_sinabs_cost))  # IAF and the variants subclass it
    REGISTRY.register_from(layers, "ALIF", rule(None))
    # a leaky integrator without spikes (its output is v_mem): an activation
    REGISTRY.register_from(layers, "ExpLeak", NeuronRule(spikes=spikes, spiking=False, steps=steps))


# --- norse: (spikes, state) per call; the membrane is the state's ``v``

_NORSE_COSTS = {
    "LIFCell": 13,
    "LIF": 13,
    "LIFRecurrentCell": 14,
    "LIFRecurrent": 14,
    "IAFCell": 5,
    "IAF": 5,
}
_NORSE_BOX_RESETS = {"reset_value": 9, "reset_subtract": 10}  # LIFBoxCell, by reset function


def _norse_cost(module: nn.Module) -> float | None:
    cls = type(module)
    if cls.__name__ == "LIFBoxCell" and cls.__module__.startswith("norse."):
        reset = getattr(module.p, "reset_method", None)
        return _NORSE_BOX_RESETS.get(getattr(reset, "__name__", ""))
    return _framework_cost(module, "norse", _NORSE_COSTS)


def _norse_v(state: Any) -> Tensor | None:
    """A norse state's membrane: its ``v``, or that of the neuron state that a refractory
    state wraps (its first field)."""
    v = getattr(state, "v", None)
    if v is None and isinstance(state, tuple) and state:
        v = getattr(state[0], "v", None)
    return v if isinstance(v, Tensor) else None


def _norse_before(
    module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Tensor | None:
    # no state: the module starts from its initial state
    return _norse_v(args[1] if len(args) > 1 else kwargs.get("state"))


def _norse_after(module: nn.Module, output: Any) -> Tensor:
    # a sequence module with record_states=True returns every step's state, time first
    return cast(Tensor, _norse_v(output[1]))


def _norse_sequence_spikes(module: nn.Module, output: Any) -> Tensor:
    return cast(Tensor, output[0]).flatten(0, 1)


def _norse_sequence_steps(module: nn.Module, output: Any) -> int:
    return int(output[0].shape[0])


_NORSE_CELL = NeuronRule(
    spikes=_output_spikes,
    membrane_before=_norse_before,
    membrane_after=_norse_after,
    cost=_norse_cost,
)
_NORSE_SEQUENCE = NeuronRule(
    spikes=_norse_sequence_spikes,
    membrane_before=_norse_before,
    membrane_after=_norse_after,
    cost=_norse_cost,
    steps=_norse_sequence_steps,
)


def _register_norse(snn_module: object) -> None:
    for name in ("SNNCell", "SNNRecurrentCell"):
        REGISTRY.register_from(snn_module, name, _NORSE_CELL)
    for name in ("SNN", "SNNRecurrent"):
        REGISTRY.register_from(snn_module, name, _NORSE_SEQUENCE)


def _register_norse_integrators(module: object) -> None:
    # leaky integrators output their membrane, not spikes: activations
    for name in ("LICell", "LIBoxCell"):
        REGISTRY.register_from(module, name, NeuronRule(spikes=_output_spikes, spiking=False))
    REGISTRY.register_from(
        module,
        "LI",
        NeuronRule(spikes=_norse_sequence_spikes, spiking=False, steps=_norse_sequence_steps),
    )


# framework module -> registers its entries (a user's own entry for a type is kept); each
# runs once, when its module is first seen imported
REGISTRY.add_frameworks(
    {
        "spikingjelly.activation_based.neuron": _register_spikingjelly,
        "sinabs.layers": _register_sinabs,
        "norse.torch.module.snn": _register_norse,
        "norse.torch.module.leaky_integrator": _register_norse_integrators,
        "norse.torch.module.leaky_integrator_box": _register_norse_integrators,
    }
)

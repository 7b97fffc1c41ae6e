"""Built-in example networks and synthetic spike input (used by the CLI and benchmarks)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import snntorch as snn
import torch
from torch import Tensor, nn

__all__ = ["EXAMPLES", "conv_snn", "mlp_snn", "poisson_spikes", "reset_neurons", "run_steps"]


def _scale_weights(model: nn.Sequential, gain: float) -> nn.Sequential:
    """Scale the default initialisation so that sparse input drives every layer."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(gain)
    return model


def mlp_snn(beta: float = 0.9, gain: float = 3.0, width: int = 256) -> nn.Sequential:
    """A GSC-like fully connected SNN, 20-256-256-256-35 with Leaky neurons.

    One call is one timestep: input ``[B, 20]``, output spikes ``[B, 35]``. Weights are
    PyTorch's default initialisation times ``gain``; ``width`` sets the hidden sizes.
    """
    sizes = (20, width, width, width, 35)
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(sizes):
        layers += [nn.Linear(n_in, n_out), snn.Leaky(beta=beta, init_hidden=True)]
    return _scale_weights(nn.Sequential(*layers), gain)


def conv_snn(beta: float = 0.9, gain: float = 3.0) -> nn.Sequential:
    """A 3-conv SNN for 2x32x32 event frames (DVS-Gesture-like), 11 classes.

    One call is one timestep: input ``[B, 2, 32, 32]``, output spikes ``[B, 11]``. Weights
    are PyTorch's default initialisation times ``gain``.
    """
    net = nn.Sequential(
        nn.Conv2d(2, 16, 5, padding="same"),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(16, 32, 5, padding="same"),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta, init_hidden=True),
        nn.Conv2d(32, 64, 5, padding="same"),
        nn.MaxPool2d(2),
        snn.Leaky(beta=beta, init_hidden=True),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 11),
        snn.Leaky(beta=beta, init_hidden=True),
    )
    return _scale_weights(net, gain)


# name -> (factory, per-step input shape)
EXAMPLES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (mlp_snn, (20,)),
    "conv": (conv_snn, (2, 32, 32)),
}


def poisson_spikes(
    shape: Sequence[int], rate: float = 0.1, generator: torch.Generator | None = None
) -> Tensor:
    """Bernoulli ("Poisson") spike trains: each element fires with probability ``rate``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must lie in [0, 1], got {rate}")
    return (torch.rand(tuple(shape), generator=generator) < rate).to(torch.float32)


def reset_neurons(model: nn.Module) -> None:
    """Clear the hidden state of every snnTorch neuron of ``model`` (a new sample begins)."""
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()


def run_steps(model: nn.Module, x: Tensor) -> None:
    """Reset the neurons, then run ``model`` on ``x[:, t]`` for every step ``t`` of ``x``.

    ``x`` is batch first, time second: ``[B, T, ...]``.
    """
    reset_neurons(model)
    for step in range(x.shape[1]):
        model(x[:, step])

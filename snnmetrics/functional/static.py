"""Static figures of a model: parameter count, memory footprint, connection sparsity."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["connection_sparsity", "footprint", "parameter_count"]


def parameter_count(model: nn.Module) -> int:
    """Number of parameter elements of ``model`` (NeuroBench's ``ParameterCount``).

    Example:
        >>> import torch
        >>> parameter_count(torch.nn.Linear(20, 5))
        105
    """
    _check_model(model)
    return sum(p.numel() for p in model.parameters())


def footprint(model: nn.Module, include_state_buffers: bool = True) -> int:
    """Memory footprint of ``model`` in bytes: all parameters plus buffers.

    By default this is NeuroBench's ``Footprint``: every parameter and every buffer,
    ``numel * element_size``. Neuron state that snnTorch (>= 0.8) keeps in non-persistent
    buffers (``mem``, ``syn``, ``spk``) is sized by the last input, so the figure then
    depends on the batch that ran last; ``include_state_buffers=False`` leaves out all
    non-persistent buffers and gives a figure that depends on the model alone.

    Example:
        >>> import torch
        >>> footprint(torch.nn.Linear(20, 5))  # 105 float32 parameters
        420
    """
    _check_model(model)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    seen: set[int] = set()  # a tensor registered in several modules counts once
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if id(buffer) in seen:
                continue
            seen.add(id(buffer))
            if include_state_buffers or name not in module._non_persistent_buffers_set:
                size += buffer.numel() * buffer.element_size()
    return size


def connection_sparsity(model: nn.Module, decimals: int | None = 4) -> float:
    """Fraction of zero weights over all connection layers (NeuroBench's rule).

    Counted over ``nn.Linear`` and ``nn.Conv1d/2d/3d`` weights (not biases) and over every
    parameter of ``nn.RNN/LSTM/GRU`` layers and cells (biases included), wherever they sit
    in the model. NeuroBench rounds to 4 decimals, the default; ``decimals=None`` gives the
    exact fraction.

    Example:
        >>> import torch
        >>> layer = torch.nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
        >>> connection_sparsity(layer)
        0.5
    """
    _check_model(model)
    zeros = total = 0
    for weight in _connection_weights(model):
        zeros += int((weight == 0).sum())
        total += weight.numel()
    if total == 0:
        raise ValueError(
            f"{type(model).__name__} has no Linear, Conv or recurrent layer: "
            "connection sparsity is undefined"
        )
    if decimals is None:
        return zeros / total
    # NeuroBench divides as float32 tensors before rounding; do the same so that values
    # on a rounding boundary round alike
    return round(float(torch.tensor(zeros) / total), decimals)


def _connection_weights(model: nn.Module) -> Iterator[Tensor]:
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            yield module.weight
        elif isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            yield from module.parameters(recurse=False)


def _check_model(model: object) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")

"""Rules keyed by module type: the one mechanism behind the connection and neuron registries.

A rule registered for a type applies to its subclasses too (the nearest registered base
class wins). Entries for an optional framework are registered lazily: each framework
module has a function that registers its types, run once, at the first lookup after the
user imported that module. A model holding a framework's layer has imported the
framework, so nothing is ever imported here and ``import snnmetrics`` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from torch import nn

__all__ = ["TypeRegistry"]

R = TypeVar("R")


class TypeRegistry(Generic[R]):
    """Rules of type ``R`` by ``nn.Module`` type, with lazily registered framework entries."""

    def __init__(self) -> None:
        self.rules: dict[type[nn.Module], R] = {}
        self.frameworks: dict[str, Callable[[Any], None]] = {}
        self.pending: set[str] = set()

    def register(self, layer_type: type[nn.Module], rule: R) -> None:
        """Register (or replace) the rule of ``layer_type`` and its subclasses."""
        if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
            raise TypeError(f"layer_type must be an nn.Module subclass, got {layer_type!r}")
        self.rules[layer_type] = rule

    def register_from(self, framework_module: object, name: str, rule: R) -> None:
        """Register ``rule`` for the class ``name`` of a framework module, unless one is set."""
        layer_type = getattr(framework_module, name, None)
        if isinstance(layer_type, type) and issubclass(layer_type, nn.Module):
            self.rules.setdefault(layer_type, rule)

    def add_frameworks(self, entries: Mapping[str, Callable[[Any], None]]) -> None:
        """Framework module name -> function registering its entries (run once, lazily)."""
        self.frameworks.update(entries)
        self.pending.update(entries)

    def load_frameworks(self) -> None:
        """Register the entries of every framework module imported by now."""
        for name in [name for name in self.pending if name in sys.modules]:
            self.pending.discard(name)
            self.frameworks[name](sys.modules[name])

    def lineage(self, layer: nn.Module) -> Iterator[tuple[type, R | None]]:
        """The classes of ``layer`` from the nearest, each with its rule (or ``None``)."""
        self.load_frameworks()
        for cls in type(layer).__mro__:
            yield cls, self.rules.get(cls)

    def lookup(self, layer: nn.Module) -> R | None:
        """The rule of the nearest registered class of ``layer``, or ``None``."""
        return next((rule for _, rule in self.lineage(layer) if rule is not None), None)

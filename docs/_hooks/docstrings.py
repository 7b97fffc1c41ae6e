"""A griffe extension that reads the package's docstrings as the API pages need them.

The docstrings are written for ``help()``, doctest and torchmetrics-like readers: their
examples sit under ``Example:`` (which Google-style parsers take for an admonition, so the
``>>>`` lines would render as prose) and they name other objects with Sphinx roles
(``:class:`~snnmetrics.Energy```). This rewrites both as the docs are built; the source is
left as it is.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|obj|exc):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    """``:class:`~a.b.C``` -> ```C```; without ``~`` the full path is kept."""
    path = match.group(2).strip()
    if match.group(1):
        path = path.rsplit(".", 1)[-1]
    return f"`{path}`"


def rewrite(text: str) -> str:
    """The docstring ``text`` with ``Example:`` read as ``Examples:`` and roles as code."""
    return _ROLE.sub(_role, _EXAMPLE.sub(r"\1Examples:", text))


class SnnmetricsDocstrings(Extension):
    """Rewrites every docstring once, when its object is loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

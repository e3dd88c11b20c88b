"""A griffe extension for the API reference: Sphinx roles in the docstrings become code spans.

The docstrings cross-reference in Sphinx's syntax (``:func:`multilevel.lmm```,
``:class:`~multilevel.lmm.result.LmmResult```), which Markdown would print literally. This
rewrites each role as a code span of its target (the last component when the target starts
with ``~``, as Sphinx shows it), before mkdocstrings parses the docstring. The docstrings
themselves are not changed.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj):`(~?)([^`]+)`")


def _plain(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = ROLE.sub(_plain, obj.docstring.value)

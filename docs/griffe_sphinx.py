"""Griffe extension: the Sphinx (napoleon) conventions of this project's docstrings, rendered by mkdocstrings.

The docstrings are Google style with three Sphinx habits that Markdown would print as text:

* roles, ``:class:`~hyperlevel.solvers.Dense``` or ``:func:`degrade```: each becomes an autorefs link
  (``[`Dense`][hyperlevel.solvers.Dense]``). mkdocstrings' ``scoped_crossrefs`` resolves a short name in the scope
  of the documented object, as Sphinx does, and ``mkdocs build --strict`` fails on a reference that no longer
  resolves (a renamed or removed name). Names of other libraries (``torch.func.functional_call``) become plain
  code: no inventory of theirs is loaded, so the build needs no network;
* ``.. math:: expr`` (one line): a ``tex`` code block; a paragraph ending in ``::`` ends in ``:`` (its indented
  block is already a Markdown code block);
* an ``Example:`` heading over doctest lines: griffe's ``Examples:`` section (``Example:`` would be an admonition
  that shows the ``>>>`` prompts as nested quotes).

The rewrite happens as each docstring is loaded, before griffe parses its sections; the sources are unchanged.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`(~?)([^`<>]+?)`")
# roots of other libraries whose names are written out in roles
_EXTERNAL = ("torch", "numpy", "scipy", "PIL", "skimage", "torchvision", "typing", "collections", "pathlib")
_MATH = re.compile(r"^([ \t]*)\.\. math::[ \t]*(\S.*)$", re.M)
_LITERAL = re.compile(r"(?<=\S)::[ \t]*$", re.M)
_EXAMPLE = re.compile(r"^([ \t]*)Example:[ \t]*\n(?=\s*>>>)", re.M)


def _link(match: re.Match[str], sibling: bool) -> str:
    short, target = match.group(1) == "~", match.group(2).strip()
    title = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    if target.split(".", 1)[0] in _EXTERNAL or title.startswith("_"):
        return f"`{title}`"  # another library's name, or a private one (no page documents it)
    if sibling and target.startswith("."):
        target = "." + target  # Sphinx's `.name` in a module is a sibling; mkdocstrings' would be a member
    return f"[`{title}`][{target}]"


def convert(text: str, module: bool = False) -> str:
    """``text`` with roles as cross-references, math directives as code blocks, ``Example:`` as ``Examples:``.

    ``module``: the docstring is a module's other than an ``__init__``, where a role's leading dot names a sibling
    module (in an ``__init__`` it names a member of the package, as in mkdocstrings).
    """
    text = _ROLE.sub(lambda m: _link(m, module), text)
    text = _LITERAL.sub(":", text)
    text = _MATH.sub(lambda m: f"{m[1]}```tex\n{m[1]}{m[2]}\n{m[1]}```", text)
    return _EXAMPLE.sub(lambda m: f"{m[1]}Examples:\n", text)


class SphinxConventions(griffe.Extension):
    """Rewrites every docstring as it is loaded (see the module docstring)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value, module=obj.is_module and not obj.is_init_module)

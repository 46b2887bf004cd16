"""The docs site's griffe extension (docs/griffe_sphinx.py): Sphinx conventions -> mkdocstrings Markdown.

The strict site build (`make docs`) checks that every rewritten reference resolves; these tests pin the rewrite
itself, and that griffe loads the extension and parses the rewritten sections.
"""

import importlib.util
import os
import textwrap

import griffe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTENSION = os.path.join(ROOT, "docs", "griffe_sphinx.py")

_spec = importlib.util.spec_from_file_location("griffe_sphinx", EXTENSION)
ext = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ext)


def test_roles_become_cross_references():
    text = ":class:`~hyperlevel.solvers.Dense` and :func:`degrade`, :py:meth:`Target.objective`"
    assert ext.convert(text) == (
        "[`Dense`][hyperlevel.solvers.Dense] and [`degrade`][degrade], [`Target.objective`][Target.objective]"
    )


def test_other_libraries_and_private_names_become_code():
    assert ext.convert(":func:`torch.func.functional_call`") == "`torch.func.functional_call`"
    assert ext.convert(":func:`~torch.func.functional_call`") == "`functional_call`"
    assert ext.convert(":func:`_unfilter_wavefront`") == "`_unfilter_wavefront`"


def test_leading_dot_is_a_sibling_in_a_module_and_a_member_in_a_package():
    assert ext.convert(":mod:`.penalty`", module=True) == "[`penalty`][..penalty]"
    assert ext.convert(":mod:`.penalty`", module=False) == "[`penalty`][.penalty]"


def test_math_literal_blocks_and_example_heading():
    text = "Sum\n\n.. math:: a + b\n\nLayout::\n\n    x/y.png\n\nExample:\n    >>> 1 + 1\n    2\n"
    assert ext.convert(text) == (
        "Sum\n\n```tex\na + b\n```\n\nLayout:\n\n    x/y.png\n\nExamples:\n    >>> 1 + 1\n    2\n"
    )
    # an Example: admonition over prose stays an admonition
    assert ext.convert("Example:\n    call it twice.\n") == "Example:\n    call it twice.\n"


def test_griffe_loads_the_extension_and_parses_the_rewritten_docstring(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(textwrap.dedent('''
        """A package. See :func:`f`."""


        def f(x: int) -> int:
            """Double ``x`` (:class:`~pkg.Thing` unused).

            Args:
                x: the number.

            Example:
                >>> f(2)
                4
            """
            return 2 * x
    '''))
    pkg = griffe.load("pkg", search_paths=[str(tmp_path)], extensions=griffe.load_extensions(EXTENSION))
    assert pkg.docstring.value == "A package. See [`f`][f]."
    sections = pkg["f"].docstring.parse("google")
    kinds = [s.kind.value for s in sections]
    assert kinds == ["text", "parameters", "examples"]
    assert sections[0].value == "Double ``x`` ([`Thing`][pkg.Thing] unused)."
    assert [p.name for p in sections[1].value] == ["x"]
    assert sections[2].value[0][1] == ">>> f(2)\n4"


def test_leading_dot_in_a_subpackage_init_is_a_member_and_in_a_module_a_sibling(tmp_path):
    sub = tmp_path / "top" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "top" / "__init__.py").write_text('"""Top: :mod:`.sub`."""\n')
    (sub / "__init__.py").write_text('"""Sub: :mod:`.a` and :mod:`.b`."""\n')
    (sub / "a.py").write_text('"""A: see :mod:`.b`."""\n')
    (sub / "b.py").write_text('"""B."""\n')
    top = griffe.load("top", search_paths=[str(tmp_path)], extensions=griffe.load_extensions(EXTENSION))
    assert top.docstring.value == "Top: [`sub`][.sub]."
    assert top["sub"].docstring.value == "Sub: [`a`][.a] and [`b`][.b]."
    assert top["sub.a"].docstring.value == "A: see [`b`][..b]."

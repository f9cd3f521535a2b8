"""Which modules of ours import a library at run time (an AST walk, for the tests that keep
every import of a library going through our wrapper of it)."""

from __future__ import annotations

import ast
from collections.abc import Iterable

from tests.conftest import REPO


def _lines(tree: ast.AST, top: str) -> list[int]:
    """Lines of ``import top...`` / ``from top... import`` outside ``if TYPE_CHECKING:``."""
    found: list[int] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, typing_only)
            return
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            names = []
        if not typing_only and any(n.partition(".")[0] == top for n in names):
            found.append(node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child, typing_only)

    visit(tree, False)
    return found


def runtime_importers(packages: Iterable[str], top: str) -> dict[str, list[int]]:
    """Each module of ``packages`` (paths relative to the repository) that imports the
    library ``top`` at run time, with the lines that do."""
    return {
        str(path.relative_to(REPO)): lines
        for package in packages
        for path in sorted((REPO / package).rglob("*.py"))
        if (lines := _lines(ast.parse(path.read_text(), str(path)), top))
    }

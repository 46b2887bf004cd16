"""House rules, checked: the core never imports the example or benchmarks; the example uses the public API."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = {"hyperlevel", "hyperlevel.solvers", "hyperlevel.distributed", "hyperlevel.testing", "hyperlevel.checkpoint",
          "hyperlevel.runfolder", "hyperlevel.signals"}
CORE_DEPENDENCIES = {"torch", "numpy", "yaml", "tqdm", "__future__"}  # tqdm/tensorboard: optional, lazy


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node


def test_core_imports_only_its_dependencies():
    stdlib = __import__("sys").stdlib_module_names
    for path in (ROOT / "hyperlevel").rglob("*.py"):
        for module, _ in _imports(path):
            top = module.split(".")[0]
            assert top in stdlib or top in CORE_DEPENDENCIES or top == "hyperlevel", f"{path}: imports {module}"
            assert not module.startswith(("examples", "benchmarks")), f"{path}: imports {module}"


def test_example_uses_only_the_public_api():
    for path in (ROOT / "examples").rglob("*.py"):
        for module, _ in _imports(path):
            if module.startswith("hyperlevel"):
                assert module in PUBLIC, f"{path}: imports the internal module {module}"


def test_core_does_not_need_torchvision():
    for path in (ROOT / "hyperlevel").rglob("*.py"):
        assert "torchvision" not in path.read_text(), path

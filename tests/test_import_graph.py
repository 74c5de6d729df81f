"""
The house drawn from ir_d2's imports (every ``import`` statement, those inside functions too):
each subpackage imports only the layers below its own, so there is no circle and no upward arrow.
"""

import ast
import collections
from pathlib import Path

from conftest import REPO_ROOT

#: lowest first; a subpackage may import from a layer below its own only
LAYERS = [
    ["ir_d2.utils"],
    ["ir_d2.structures", "ir_d2.layers", "ir_d2.config", "ir_d2.export"],
    ["ir_d2.data"],
    ["ir_d2.modeling", "ir_d2.evaluation"],
    ["ir_d2.engine"],
    ["ir_d2.model_zoo", "ir_d2"],  # "ir_d2": the package's __init__ (registration)
    ["ir_d2.tools"],
]


def _modules():
    root = Path(REPO_ROOT)
    modules = {}
    for path in sorted((root / "ir_d2").rglob("*.py")):
        name = ".".join(path.relative_to(root).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(name, path, modules):
    """The ir_d2 modules that module ``name`` (file ``path``) imports."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package[: len(package) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _subpackage_edges():
    modules = _modules()
    edges = collections.defaultdict(set)
    for name, path in modules.items():
        for target in _imports(name, path, modules):
            a, b = _subpackage(name), _subpackage(target)
            if a != b:
                edges[a].add(b)
    return edges


def test_the_import_graph_recognises_relative_and_lazy_imports():
    edges = _subpackage_edges()
    assert "ir_d2.structures" in edges["ir_d2.data"]  # relative and absolute imports
    assert "ir_d2.utils" in edges["ir_d2.config"]
    assert "ir_d2.engine" in edges["ir_d2.model_zoo"]


def test_every_import_points_down_the_layers():
    rank = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    edges = _subpackage_edges()
    unknown = sorted(set(edges) - set(rank))
    assert not unknown, f"place these subpackages in LAYERS: {unknown}"
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets if rank[b] >= rank[a]]
    assert not upward, f"imports that point up or sideways: {sorted(upward)}"

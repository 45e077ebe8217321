"""The house rules of the code base, checked: file sizes, import arrows, private APIs in one place."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import REPO

LIBRARY = REPO / "lstm_recipes"
RECIPES = REPO / "recipes"
MAX_LINES = 450
PRIVATE = re.compile(r"keras\.src|_initial_epoch|inner_loop|reduce_per_replica")


def sources():
    return sorted([*LIBRARY.rglob("*.py"), *RECIPES.glob("*.py")])


def module_name(path) -> str:
    if path.is_relative_to(RECIPES):
        return "lstm_recipes.recipes." + path.stem
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path) -> set[str]:
    """The lstm_recipes modules a file imports, at top level or inside functions."""
    found = set()
    known = {module_name(p) for p in sources()}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {name for name in found if name in known}


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_file_is_over_the_size_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines; split it along a real seam"


def test_private_keras_and_tensorflow_apis_live_in_compat_only():
    users = sorted(str(p.relative_to(REPO)) for p in sources() if PRIVATE.search(p.read_text()))
    assert users == ["lstm_recipes/compat.py"], users


def test_imports_have_no_cycles_and_the_library_never_imports_a_recipe():
    graph = {module_name(p): imports(p) - {module_name(p)} for p in sources()}
    for name, targets in graph.items():
        if not name.startswith("lstm_recipes.recipes."):
            assert not {t for t in targets if t.startswith("lstm_recipes.recipes")}, name
    # Depth-first search for a cycle.
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for target in graph.get(node, ()):
            if state.get(target) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path, node, target]))
            if target not in state:
                visit(target, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_every_keras_layer_of_the_package_is_registered():
    import importlib
    import inspect

    import keras

    unregistered = []
    for path in sources():
        module = importlib.import_module(module_name(path))
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, keras.layers.Layer):
                continue
            if keras.saving.get_registered_name(cls) != f"lstm_recipes>{cls.__name__}":
                unregistered.append(f"{module.__name__}.{cls.__name__}")
    assert not unregistered, (
        "decorate with @keras.saving.register_keras_serializable(package='lstm_recipes'): "
        + ", ".join(unregistered)
    )

"""The layers hold: every import in twinrun goes down the layer order the README writes, or
stays in its layer, and none closes a cycle.

The README's "How it is built" block is the source of truth: one line per top-level package or
module, with its layer number in front (1 is the top). Every module's syntax tree is read, so
imports inside functions count as much as those at the top of a file.
"""

import ast
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "twinrun"
README = ROOT / "README.md"

# A line of the README's tree: `  3 checks/   what a check is ...`.
_TREE_LINE = re.compile(r"^\s+(\d+) ([A-Za-z_][\w]*)(/|\.py)\s")


def readme_layers(readme=README):
    """`{unit: layer}` from the README's "How it is built" block, `__init__` for the package's
    own `__init__.py`.

    Example: the line `      3 checks/    what a check is` gives `{"checks": 3}`.
    """
    text = readme.read_text(encoding="utf-8")
    section = text.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    layers = {}
    for line in section.splitlines():
        match = _TREE_LINE.match(line)
        if match:
            layers[match.group(2)] = int(match.group(1))
    return layers


def module_name(path, package_dir):
    """`twinrun.checks.verdict` for `.../twinrun/checks/verdict.py`."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module):
    """The top-level package or module a module belongs to (`__init__` for `twinrun` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(package_dir):
    """`{module: {imported twinrun module, ...}}` for every module under `package_dir`, from
    its syntax tree: top-level and function-local imports, `from X import name` counted as an
    import of `X.name` when that is a module, else of `X`."""
    paths = {module_name(path, package_dir): path for path in package_dir.rglob("*.py")}
    graph = {}
    for module, path in paths.items():
        is_package = path.name == "__init__.py"
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".") if is_package else module.split(".")[:-1]
                    here = here[:len(here) - node.level + 1]
                    base = ".".join(here + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    targets.add(full if full in paths else base)
        graph[module] = {t for t in targets if t == "twinrun" or t.startswith("twinrun.")}
    return graph


def layer_violations(package_dir, layers):
    """Every import that goes up the layers, names a unit the README does not place, or closes
    a cycle (between modules, or between two top-level units), as one sentence each."""
    graph = imports(package_dir)
    problems = []
    for module in sorted(graph):
        if unit_of(module) not in layers:
            problems.append(f"{module} is in no layer: add `{unit_of(module)}` to the README's "
                            f"\"How it is built\" tree.")
            continue
        for target in sorted(graph[module]):
            source_unit, target_unit = unit_of(module), unit_of(target)
            if target_unit not in layers:
                continue
            if layers[target_unit] < layers[source_unit]:
                problems.append(f"{module} (layer {layers[source_unit]}) imports {target} "
                                f"(layer {layers[target_unit]}), a higher layer.")
    units = {}
    for module, targets in graph.items():
        for target in targets:
            if unit_of(module) != unit_of(target):
                units.setdefault(unit_of(module), set()).add(unit_of(target))
    problems += [f"Import cycle between modules: {' -> '.join(cycle)}."
                 for cycle in cycles(graph)]
    problems += [f"Import cycle between packages: {' -> '.join(cycle)}."
                 for cycle in cycles(units)]
    return problems


def cycles(graph):
    """One cycle through each strongly connected group of `graph` ({node: {node, ...}}) that
    has more than one node or a node importing itself, as `[a, b, ..., a]`."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                found.append(_cycle_in(graph, group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _cycle_in(graph, group):
    start = min(group)
    path, seen = [start], {start}
    node = start
    while True:
        nxt = min(n for n in graph[node] if n in group)
        path.append(nxt)
        if nxt in seen:
            return path[path.index(nxt):]
        seen.add(nxt)
        node = nxt


def test_the_readme_places_every_package_and_module_of_the_tree_and_nothing_else():
    layers = readme_layers()
    on_disk = {path.stem if path.is_file() else path.name
               for path in PACKAGE.iterdir()
               if (path.is_file() and path.suffix == ".py")
               or (path.is_dir() and (path / "__init__.py").exists())}
    assert set(layers) == on_disk
    assert sorted(set(layers.values())) == list(range(1, max(layers.values()) + 1))


def test_every_import_goes_down_the_readme_layers_without_a_cycle():
    assert layer_violations(PACKAGE, readme_layers()) == []


def test_the_layer_check_fails_on_a_planted_upward_import(tmp_path):
    copy = tmp_path / "twinrun"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    errors = copy / "errors.py"
    # Inside a function, where a lazy import would hide from a top-of-file check.
    errors.write_text(errors.read_text(encoding="utf-8")
                      + "\n\ndef _planted():\n    from twinrun.cli import main\n\n"
                        "    return main\n", encoding="utf-8")
    problems = layer_violations(copy, readme_layers())
    assert problems[0] == ("twinrun.errors (layer 8) imports twinrun.cli (layer 1), a higher "
                           "layer.")
    for kind, member in (("modules", "twinrun.errors"), ("packages", "errors")):
        assert any(p.startswith(f"Import cycle between {kind}:") and f" {member} " in p
                   for p in problems), problems


def test_the_layer_check_fails_on_a_cycle_inside_one_layer(tmp_path):
    copy = tmp_path / "twinrun"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    commands = copy / "checks" / "commands.py"
    commands.write_text(commands.read_text(encoding="utf-8")
                        + "\n\ndef _planted():\n    from twinrun.studies import scripts\n\n"
                          "    return scripts\n", encoding="utf-8")
    problems = layer_violations(copy, readme_layers())
    assert any(p.startswith("Import cycle between packages:") and "checks" in p
               and "studies" in p for p in problems), problems
    assert not any("higher layer" in p for p in problems), problems


@pytest.mark.parametrize("line, unit, layer", [
    ("      3 checks/           what a check is", "checks", 3),
    ("      8 errors.py         the one exception", "errors", 8),
    ("      1 __init__.py       the public API", "__init__", 1),
])
def test_a_readme_tree_line_gives_its_unit_and_layer(tmp_path, line, unit, layer):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## How it is built\n\n    src/twinrun/\n{line}\n\n## Next\n")
    assert readme_layers(readme) == {unit: layer}

"""The package's import direction: labels -> data -> model/losses/metrics -> train/predict.

Parsed with ``ast`` (nothing is imported), so a deferred import inside a function counts too.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nail_segformer"

# Each stage may import only stages of a lower rank, and itself.
RANKS = {
    "labels": 0,
    "runtime": 0,
    "hub": 0,
    "_lazy": 0,
    "synthetic": 1,
    "data": 1,
    "model": 2,
    "losses": 2,
    "metrics": 2,
    "train": 3,
    "predict": 3,
    "export": 4,
    "app": 4,
}
# Only these modules may import a command-line module (each CLI is reached via __main__).
CLI_MODULES = {"train.cli", "predict.cli", "data.cli", "synthetic.cli", "app.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "__init__"


def _imports(path: Path) -> list[str]:
    """Every ``nail_segformer.X`` module imported by ``path``, relative to the package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "nail_segformer":
                names = [f"nail_segformer.{alias.name}" for alias in node.names]
            elif node.module.startswith("nail_segformer."):
                # `from nail_segformer.train import run_dir` imports a submodule too.
                names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [
            n.removeprefix("nail_segformer.") for n in names if n.startswith("nail_segformer.")
        ]
    return found


def _stage(module: str) -> str:
    return module.split(".")[0]


def _package_modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for p in PACKAGE.rglob("*.py")
        if "metric_modules" not in p.parts  # loaded by `evaluate` as a script, not imported
    }


def _violations(edges: dict[str, list[str]], modules: set[str]) -> list[str]:
    problems = []
    for source, targets in edges.items():
        for target in targets:
            if target not in modules and target.rsplit(".", 1)[0] in modules:
                continue  # `from pkg.mod import name`: the name is not a module
            src, dst = _stage(source), _stage(target)
            if src == "__init__":
                continue  # the lazy public API re-exports every stage
            if src != dst and RANKS[dst] >= RANKS[src]:
                problems.append(f"{source} imports {target}: {dst} is not below {src}")
            if target.split(".")[-1].startswith("_") and src != dst and "." in target:
                problems.append(f"{source} imports private {target} of another stage")
            if target in CLI_MODULES and not source.endswith("__main__") and source != target:
                problems.append(f"{source} imports the command-line module {target}")
    return problems


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    graph = {m: {t for t in ts if t in edges and t != m} for m, ts in edges.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def _edges() -> dict[str, list[str]]:
    modules = _package_modules()
    return {name: _imports(path) for name, path in modules.items()}


def test_every_stage_has_a_rank():
    stages = {_stage(m) for m in _package_modules()} - {"__init__"}
    assert stages <= set(RANKS), f"give these a rank in RANKS: {stages - set(RANKS)}"


def test_imports_only_point_down_the_data_flow():
    edges = _edges()
    assert _violations(edges, set(edges)) == []


def test_no_import_cycle_between_modules():
    # Package __init__ files re-export their submodules; a submodule importing its own
    # package's __init__ is not a cycle in the sense that matters (no half-initialised module
    # is read), so cycles are looked for among leaf modules only.
    edges = {m: ts for m, ts in _edges().items() if not (PACKAGE / m.replace(".", "/")).is_dir()}
    assert _cycles(edges) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"metrics": ["train.args"], "train.args": []}, "train is not below metrics"),
        ({"data.files": ["labels"], "labels": ["data.files"]}, "data is not below labels"),
        ({"predict.x": ["train.cli"], "train.cli": []}, "train is not below predict"),
        ({"export": ["predict.cli"], "predict.cli": []}, "command-line module predict.cli"),
        ({"export": ["data._hidden"], "data._hidden": []}, "private data._hidden"),
    ],
)
def test_the_direction_check_catches_upward_and_cli_imports(edges, expected):
    assert any(expected in problem for problem in _violations(edges, set(edges)))


def test_the_cycle_check_catches_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"]}) == [["a", "b", "c", "a"]]


def test_importing_the_package_loads_no_heavy_library():
    code = (
        "import sys, nail_segformer; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'PIL') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

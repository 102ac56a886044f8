"""The shape of the code, read from its import graph (every import, those inside functions too).

- No cycle among the project's modules: an import moved into a function hides a cycle, it does
  not remove it, so in-function imports count.
- The core is layered (algobench/README section "How the code is laid out"): no module imports
  one above it.
- Workload data modules (everything in a workload folder but its registration, model and cost
  files) use only `algobench.files` and `algobench.errors` from the core.
- In-function imports of the project's own modules are few, and each says why on its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("algobench", "workloads", "scoring", "submissions")

# Bottom to top. A module may import its own layer and those below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("algobench", "algobench.__main__", "algobench.errors", "algobench.specs", "algobench.registry",
     "algobench.clock", "algobench.fingerprint", "algobench.files", "algobench.events", "algobench.layout",
     "algobench.contention", "algobench.distributed", "algobench.flops", "algobench.schedules",
     "algobench.tuning", "algobench.hparam_ranges"),
    ("algobench.workload", "algobench.submission", "algobench.forms", "algobench.algoperf",
     "algobench.checkpoint", "algobench.recorder"),
    ("algobench.frameworks",),
    ("algobench.runner",),
    ("algobench.trial",),
    ("algobench.display", "algobench.tracking", "algobench.study", "algobench.study_view", "algobench.library",
     "algobench.slurm"),
    ("algobench.cli",),
]
# The user's packages: workloads and submissions sit on the core's workload layer and may use the
# frameworks' workload bases; scoring reads results (the layout) and sits beside the consumers.
OUTSIDE = {"workloads": 2, "submissions": 2, "scoring": 5}
# (`algobench/__main__.py` runs the command line: it is the one module allowed to import the top.)
ENTRY_POINTS = {"algobench.__main__"}
DATA_MODULE_CORE = {"algobench.files", "algobench.errors"}
NOT_DATA = {"__init__", "model", "jax_model", "cost"}
# The command line loads torch, pandas, matplotlib, submitit and wandb only in the commands that need
# them (so that --help and shell completion stay fast); jax is optional. Nothing else is in a function.
MAX_IN_FUNCTION = 27


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports(path: Path, name: str, modules: dict[str, Path]) -> list[tuple[str, int, bool, str]]:
    """(imported module, line, inside a function, source line) for every project import in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    lines = path.read_text().splitlines()
    is_package = path.name == "__init__.py"
    out = []

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = name if is_package else name.rpartition(".")[0]
                    for _ in range(child.level - 1):
                        package = package.rpartition(".")[0]
                    base = f"{package}.{base}" if base else package
                # `from pkg import mod` imports the module pkg.mod when there is one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in child.names]
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only: never executed
            for resolved in dict.fromkeys(resolve(target) for target in targets):  # (once per module a line names)
                if resolved and resolved != name:
                    out.append((resolved, child.lineno, inside, lines[child.lineno - 1].strip()))
            visit(child, inside)

    visit(tree, False)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int, bool, str]]]:
    modules = project_modules()
    return {name: imports(path, name, modules) for name, path in modules.items()}


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best and prefix != "algobench":
                best, rank = len(prefix), i
    if rank is not None:
        return rank
    if module == "algobench":
        return 0
    top = module.split(".")[0]
    if top in OUTSIDE:
        return OUTSIDE[top]
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py")


def test_no_import_cycles(graph):
    edges = {m: sorted({t for t, *_ in targets}) for m, targets in graph.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def strongconnect(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, []):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            strongconnect(v)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_cycle_finder_sees_in_function_imports(tmp_path):
    """The graph counts an import inside a function (a hidden cycle would otherwise pass)."""
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from algobench import runner\n")
    found = imports(path, "algobench.clock", {"algobench.runner": path, "algobench.clock": path})
    assert found == [("algobench.runner", 2, True, "from algobench import runner")]


def test_no_module_imports_a_layer_above_it(graph):
    upward = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)}) at line {line}"
              for m, targets in graph.items() if m not in ENTRY_POINTS
              for t, line, _, _ in targets if layer_of(t) > layer_of(m)]
    assert upward == []


def test_workload_data_modules_use_only_files_and_errors_from_the_core(graph):
    bad = []
    for m, targets in graph.items():
        parts = m.split(".")
        if parts[0] != "workloads" or len(parts) < 3 or parts[-1] in NOT_DATA:
            continue
        bad += [f"{m} imports {t}" for t, *_ in targets if t.startswith("algobench") and t not in DATA_MODULE_CORE]
    assert bad == []


def test_in_function_imports_are_few_and_each_has_a_reason(graph):
    inside = [(m, t, line, src) for m, targets in graph.items() for t, line, in_function, src in targets
              if in_function]
    unexplained = [f"{m}:{line} {src}" for m, t, line, src in inside if "#" not in src and not _reason_above(m, line)]
    assert unexplained == [], "an in-function import says why, in a comment on its line or the one above"
    sites = sorted({(m, line, src) for m, _, line, src in inside})
    assert len(sites) <= MAX_IN_FUNCTION, sites


def _reason_above(module: str, line: int) -> bool:
    """A comment on one of the lines just above, within the same block of imports (or a `try:`)."""
    lines = project_modules()[module].read_text().splitlines()
    for above in reversed(lines[:line - 1]):
        above = above.strip()
        if "#" in above:
            return True
        if not (above.startswith(("from ", "import ")) or above == "try:"):
            return False
    return False

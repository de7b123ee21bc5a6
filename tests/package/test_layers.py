"""The package's layers import one way: stats -> records -> rules -> actions, store beside them,
the profiler above them, probe on top; no cycle between subpackages; imports at the top of modules, except the few optional
heavy ones named here with the reason."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gradprobe

PACKAGE = Path(gradprobe.__file__).parent
# Imports allowed inside functions: optional, heavy, or not always built.
LAZY_ALLOWED = {
    "gradprobe._cuda": "built only where nvcc exists",
    "gradprobe.workflows.demo": "the CLI loads torch and transformers only for `gradprobe demo`",
    # A call-time convenience, not a dependency of the store: the store works without the report.
    "gradprobe.report": "Run.report() loads the report (and plotly) only when called",
    "gradprobe.workflows.finetune": "the CLI loads torch and transformers only for `gradprobe finetune`",
    "gradprobe.workflows.pretrain": "the CLI loads torch and transformers only for `gradprobe pretrain`",
}
# Optional frameworks (not dependencies of the core): imported only by the modules named here, each
# at its top, so that only who imports that module needs the framework.
OPTIONAL_FRAMEWORKS = {
    "transformers": ("gradprobe.integrations.transformers",  # the Trainer callback subclasses TrainerCallback
                     "gradprobe.workflows.demo",  # `gradprobe demo` fine-tunes a BERT (loaded lazily by the CLI)
                     "gradprobe.workflows.finetune", "gradprobe.workflows.pretrain"),  # likewise, lazily
    "lightning": ("gradprobe.integrations.lightning",),  # the callback subclasses lightning's Callback
    "accelerate": ("gradprobe.integrations.accelerate",  # attach() checks for an Accelerator
                   "gradprobe.integrations.transformers"),  # the Trainer accumulates through accelerate
}
# What each layer may import (besides itself); anything not listed may import anything below it.
ALLOWED = {
    "_core": set(),
    "user_hooks": set(),
    "own_warnings": set(),
    "thread_cpu": {"own_warnings"},
    "torch_bridge": {"_core"},
    "_version": {"_core"},
    "redact": set(),
    "stats": {"_core", "_cuda"},
    "metrics": set(),
    "records": {"stats", "metrics"},
    "rules": {"records", "stats", "metrics", "thread_cpu", "own_warnings"},
    "actions": {"rules", "records", "stats", "redact", "thread_cpu", "own_warnings"},
    "store": {"records", "stats", "thread_cpu", "own_warnings"},
    "export": {"store", "stats", "records"},
    "profiler": {"metrics", "records", "rules", "actions", "store", "stats", "user_hooks", "thread_cpu", "own_warnings"},
    "probe": {"_core", "_version", "stats", "records", "rules", "actions", "store", "profiler", "metrics",
              "user_hooks", "torch_bridge", "thread_cpu", "own_warnings"},
    "report": {"store", "rules", "records", "stats", "metrics"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported gradprobe module, at top level?) for every import in the file."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for t in targets:
            if t == "gradprobe" or t.startswith("gradprobe."):
                found.append((t, id(node) in top or _under_type_checking(tree, node)))
    return found


def _under_type_checking(tree: ast.Module, node: ast.AST) -> bool:
    for block in tree.body:
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING":
            if any(child is node for child in ast.walk(block)):
                return True
    return False


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = module_name(path)
        if source == "gradprobe":
            continue  # the root re-exports (lazily) from every layer
        for target, at_top in imports(path):
            if not at_top and target in LAZY_ALLOWED:
                continue  # a named call-time import (above): not a layer dependency
            if layer(target) and layer(target) != layer(source):
                edges.setdefault(layer(source), set()).add(layer(target))
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle_between_subpackages():
    assert find_cycle(graph()) is None, f"import cycle: {' -> '.join(find_cycle(graph()) or [])}"


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_layers_import_only_downwards():
    wrong = {(source, target) for source, targets in graph().items() if source in ALLOWED
             for target in targets - ALLOWED[source]}
    assert not wrong, f"imports against the layering: {sorted(wrong)}"


def test_imports_are_at_the_top_of_modules():
    lazy = {(module_name(path), target) for path in PACKAGE.rglob("*.py") for target, at_top in imports(path)
            if not at_top and module_name(path) != "gradprobe" and target not in LAZY_ALLOWED}
    assert not lazy, f"imports inside functions: {sorted(lazy)}"


def test_documented_submodules_work_after_a_plain_import_in_a_fresh_interpreter():
    code = ("import sys, gradprobe\n"
            "assert 'torch' not in sys.modules, 'import gradprobe must stay light'\n"
            "assert gradprobe.rules.default() and gradprobe.actions.Log()\n"
            "assert gradprobe.store.open_run and gradprobe.Probe and gradprobe.open_run\n"
            "assert gradprobe.__version__ == __import__('importlib.metadata').metadata.version('gradprobe')\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def framework_imports(path: Path) -> set[str]:
    """The optional frameworks a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        found |= {name.split(".")[0] for name in names} & set(OPTIONAL_FRAMEWORKS)
    return found


def test_optional_frameworks_are_imported_only_by_their_adapters():
    wrong = {(module_name(path), framework) for path in PACKAGE.rglob("*.py") for framework in framework_imports(path)
             if module_name(path) not in OPTIONAL_FRAMEWORKS[framework]}
    assert not wrong, f"optional frameworks imported outside their adapters: {sorted(wrong)}"


def test_importing_the_integrations_package_imports_no_framework():
    code = ("import sys, gradprobe.integrations\n"
            f"loaded = {sorted(OPTIONAL_FRAMEWORKS)!r}\n"
            "assert not [m for m in loaded if m in sys.modules], [m for m in loaded if m in sys.modules]\n")
    subprocess.run([sys.executable, "-c", code], check=True)

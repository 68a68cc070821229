"""The repo's shape: what common/ holds, and no import circle between the project's own modules."""
import ast

from tests.conftest import ROOT

PACKAGES = ("common", "analysis", "fixtures", "baseline", "distilbert", "mistral", "tools")


def project_imports() -> dict[str, set[str]]:
    """Each project module and the project modules it imports (at the top or inside a function)."""
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts): p
               for package in PACKAGES for p in (ROOT / package).glob("*.py") if p.name != "__init__.py"}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                candidates = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found |= {c for c in candidates if c in modules}
        graph[name] = found - {name}
    return graph


def test_no_import_circle():
    graph = project_imports()
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_every_module_in_common_serves_an_experiment():
    """common/ holds what the experiments share: each of its modules is imported, directly or through another, by
    distilbert/, mistral/ or baseline/."""
    graph = project_imports()
    reached, todo = set(), [m for m in graph if m.split(".")[0] in ("distilbert", "mistral", "baseline")]
    while todo:
        module = todo.pop()
        for imported in graph[module] - reached:
            reached.add(imported)
            todo.append(imported)
    common = {m for m in graph if m.startswith("common.")}
    assert common, "no modules found in common/"
    assert not common - reached, f"in common/ but used by no experiment: {sorted(common - reached)}"


def test_the_circle_detector_finds_a_circle(monkeypatch):
    import sys

    import pytest

    monkeypatch.setattr(sys.modules[__name__], "project_imports", lambda: {"a": {"b"}, "b": {"a"}})
    with pytest.raises(AssertionError, match="import circle: a -> b -> a"):
        test_no_import_circle()


def test_no_function_takes_more_than_5_positional_parameters():
    """Beyond five, a call reads as a row of values whose order is the only key: the rest are keyword-only."""
    import ast

    offenders = []
    for path in sorted(ROOT.glob("*/*.py")):
        if path.parts[len(ROOT.parts)] in (".venv", ".cache", "mutants"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # pytest passes fixtures by name: a test's parameters are its fixtures, not a call's argument list
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("test_"):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 5:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({', '.join(positional)})")
    assert not offenders, offenders

"""The layout holds: no import cycles between project modules, the import direction of the package map, every
FANZHA_* setting read in models/settings.py only, and the archive and feedback commands never load the HTTP
layer (measured with `python -X importtime`, in a subprocess, on real runs)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# where each installed package's files live (pyproject.toml's package-dir)
PACKAGES = {
    "fanzha": REPO / "fanzha",
    "fanzha.models": REPO / "models",
    "fanzha.serving": REPO / "serving",
    "fanzha.training": REPO / "training",
    "fanzha.datasets": REPO / "datasets",
}


def project_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if package == "fanzha" and parts and parts[0] in ("models", "serving", "training", "datasets"):
                continue  # not a folder of fanzha/ in this layout
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere (module level or inside functions), except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def add(target: str) -> None:
        while target and target not in known:  # `from fanzha.models.errors import X` → fanzha.models.errors
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                base = resolve(child.module, child.level)
                for alias in child.names:
                    add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def test_no_import_cycles_between_project_modules() -> None:
    graph = import_graph()
    assert len(graph) > 60 and "fanzha.platform.facade" in graph and "fanzha.batch.job" in graph
    # Tarjan's strongly connected components: a component of more than one module is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    assert cycles == []


def test_imports_follow_the_package_map() -> None:
    """serving → platform, batch → models ← training; models imports no other layer; nothing imports serving
    but the CLI's import-model; batch imports neither serving nor platform (tracking is passed in)."""
    graph = import_graph()

    def layer(module: str) -> str:
        parts = module.split(".")
        return (
            parts[1]
            if len(parts) > 1
            and parts[1] in ("models", "serving", "training", "datasets", "platform", "batch")
            else module
        )

    allowed = {
        "models": {"models"},
        "datasets": {"datasets", "models"},
        "platform": {"platform", "models", "datasets"},
        "batch": {"batch", "models"},
        "serving": {"serving", "platform", "models"},
        "training": {"training", "models", "datasets"},
    }
    wrong = sorted(
        f"{m} → {t}"
        for m, targets in graph.items()
        for t in targets
        if layer(m) in allowed and layer(t) not in allowed[layer(m)] and t != "fanzha"
    )
    assert wrong == []
    into_serving = sorted(
        m
        for m, targets in graph.items()
        if layer(m) != "serving" and any(layer(t) == "serving" for t in targets)
    )
    assert into_serving == ["fanzha.cli"]  # `fanzha import-model`, imported when that command runs


def test_fanzha_settings_are_read_in_one_module() -> None:
    reads = re.compile(r"(environ|getenv)\b[^\n]*FANZHA_|FANZHA_[A-Z_]*[\"']\s*(\]|in\s+os\.environ)")
    found = []
    for path in project_modules().values():
        if path == REPO / "models" / "settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if reads.search(line):
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert found == []
    assert "os.environ" in (REPO / "models" / "settings.py").read_text(encoding="utf-8")


def _imported(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def _run(args: list[str], cwd: Path, env: dict) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fanzha.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return _imported(out.stderr)


@pytest.mark.parametrize("command", ["score", "summarize", "report", "export-feedback"])
def test_archive_and_feedback_commands_load_neither_bentoml_nor_the_http_layer(tmp_path, command) -> None:
    src = tmp_path / "posts.jsonl"
    src.write_text(
        json.dumps(
            {"id": "m1", "text": "加QQ群 83726154 免费领皮肤，先交10元激活费", "account_id": "u1"},
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    env = {**os.environ, "FANZHA_DATABASE_URL": f"sqlite:///{tmp_path / 'fanzha.db'}", "FANZHA_THREADS": "1"}
    runs = {"score": ["score", str(src), "-o", str(tmp_path / "out.parquet"), "-q", "--track"]}
    modules = _run(runs["score"], tmp_path, env)  # the committed model, and the risk database it tracks into
    if command != "score":
        args = {
            "summarize": ["summarize", str(tmp_path / "out.parquet")],
            "report": ["report", str(tmp_path / "out.parquet")],
            "export-feedback": ["export-feedback", "-o", str(tmp_path / "feedback.jsonl")],
        }[command]
        modules = _run(args, tmp_path, env)
    expected = {
        "score": {"fanzha.batch.job", "fanzha.platform.facade"},
        "summarize": {"fanzha.batch.summary_report"},
        "report": {"fanzha.batch.summary_report"},
        "export-feedback": {"fanzha.platform.facade", "fanzha.datasets.feedback"},
    }
    assert expected[command] <= modules  # the measurement sees the command's own modules
    loaded = sorted(m for m in modules if m.split(".")[0] == "bentoml" or m.startswith("fanzha.serving"))
    assert loaded == []

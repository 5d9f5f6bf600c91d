"""The serving path must not drag torch or transformers into a platform's process."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_runtime_imports_neither_torch_nor_transformers() -> None:
    code = (
        "import os, sys, tempfile\n"
        "os.environ.update(BENTOML_HOME=tempfile.mkdtemp(), BENTOML_DO_NOT_TRACK='true')\n"
        "import fanzha.models, fanzha.serving.service, fanzha.cli\n"
        "from fanzha.models import Detector\n"
        "from fanzha.models.ocr import get_engine\n"
        "get_engine('rapidocr', 1)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_no_torch_import_statements_in_serving_path() -> None:
    for folder in ("models", "serving"):
        for path in (REPO / folder).rglob("*.py"):
            for line in path.read_text(encoding="utf-8").splitlines():
                stripped = line.strip()
                assert not stripped.startswith(("import torch", "from torch", "import transformers", "from transformers")), f"{path}: {line}"

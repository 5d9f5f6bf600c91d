"""Export a fine-tuned classifier to ONNX, prune its vocabulary, quantise it to int8 and check parity.

    python -m fanzha.training.export --model_dir runs/model --output_dir models/default

Writes `model.onnx` (int8, what ships), `tokenizer.json` and `parity.json`; keeps the fp32 graph in
`--work_dir` (too big to commit). Metadata inside the ONNX file: outputs (label map), thresholds,
max_length, tokenizer SHA-256, model version, so a model file cannot be paired with the wrong tokenizer.
Parity gates: fp32 ORT logits vs torch max |diff| ≤ 1e-4; int8 macro-F1 (dev+test) within 0.5 point of fp32.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process
from sklearn.metrics import f1_score
from transformers import HfArgumentParser

from fanzha.datasets.corpus import load_corpus
from fanzha.models.labels import OUTPUTS
from fanzha.models.normalize import normalize
from fanzha.models.text import TextClassifier, tokenizer_sha256

from .model import FraudClassifier, encode_batch, predict_logits
from .train import targets
from .vocab import prune_model_vocab, prune_tokenizer, select_pieces

log = logging.getLogger("fanzha.export")


@dataclass
class ExportArguments:
    model_dir: str = field(default="runs/model", metadata={"help": "fine-tuned checkpoint (fanzha.training.train output)"})
    output_dir: str = field(default="models/default", metadata={"help": "where model.onnx (int8) + tokenizer.json go"})
    work_dir: str = field(default="runs/export", metadata={"help": "scratch dir for the fp32 and pre-processed graphs"})
    corpus: str | None = field(default=None, metadata={"help": "corpus used for pruning and parity (default: datasets/corpus)"})
    prune_vocab: bool = field(default=True, metadata={"help": "drop vocabulary pieces CJK/ASCII text and the corpus never need"})
    ascii_top: int = field(default=12000, metadata={"help": "multi-character ASCII pieces kept by pruning"})
    per_channel: bool = field(default=True, metadata={"help": "per-channel int8 weight scales"})
    reduce_range: bool = field(default=False, metadata={"help": "7-bit weights (for CPUs without VNNI where u8s8 saturates)"})
    version: str | None = field(default=None, metadata={"help": "model version string (default: fanzha-text-<date>-<layers>L)"})
    opset: int = field(default=18, metadata={"help": "ONNX opset"})
    max_parity_texts: int = field(default=400, metadata={"help": "texts used for the fp32 logits parity check"})
    strict_parity: bool = field(default=True, metadata={"help": "exit non-zero when a parity gate fails"})


class _Exportable(torch.nn.Module):
    """Inference-only wrapper: no dropout, logits out."""

    def __init__(self, model: FraudClassifier) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)


def export_fp32(model: FraudClassifier, path: Path, opset: int) -> None:
    example = {"input_ids": torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=512)
    torch.onnx.export(
        _Exportable(model).eval(),
        (example["input_ids"], example["attention_mask"]),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def quantize_int8(fp32: Path, int8: Path, work: Path, per_channel: bool, reduce_range: bool) -> None:
    pre = work / "model.pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_dynamic(str(pre), str(int8), weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range)


def macro_f1(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> float:
    return float(f1_score(y[:, 1:], probs[:, 1:] >= thresholds[1:], average="macro", zero_division=0))


def main(argv: list[str] | None = None) -> Path:
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    out, work = Path(args.output_dir), Path(args.work_dir)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)

    # 1. load and prune
    model, tokenizer, config = FraudClassifier.load(args.model_dir)
    records = load_corpus(args.corpus)
    if args.prune_vocab:
        keep = select_pieces(tokenizer, [normalize(r["text"]).text for r in records], ascii_top=args.ascii_top)
        before = tokenizer.get_vocab_size()
        tokenizer = prune_tokenizer(tokenizer, keep)
        prune_model_vocab(model.encoder, keep)
        log.info("vocabulary %d → %d pieces", before, len(keep))

    # 2. fp32 ONNX + metadata
    fp32, int8 = work / "model.fp32.onnx", out / "model.onnx"
    tok_path = out / "tokenizer.json"
    tokenizer.save(str(tok_path))
    export_fp32(model, fp32, args.opset)
    layers = getattr(model.encoder.config, "num_hidden_layers", "?")
    version = args.version or f"fanzha-text-{dt.date.today():%Y%m%d}-{layers}L-int8"
    metadata = {
        "fanzha.outputs": json.dumps(list(config["outputs"])),
        "fanzha.thresholds": json.dumps(config["thresholds"]),
        "fanzha.max_length": str(config["max_length"]),
        "fanzha.tokenizer_sha256": tokenizer_sha256(tok_path),
        "fanzha.version": version,
        "fanzha.base_model": str(config.get("base_model", "")),
        "fanzha.pooling": config.get("pooling", "mean"),
    }
    set_metadata(fp32, {**metadata, "fanzha.version": version.replace("-int8", "-fp32")})

    # 3. int8
    quantize_int8(fp32, int8, work, args.per_channel, args.reduce_range)
    set_metadata(int8, metadata)

    # 4. parity: fp32 logits vs torch; int8 vs fp32 on the held-out metric
    held_out = [r for r in records if r["split"] in ("dev", "test")]
    texts = [normalize(r["text"]).text for r in held_out]
    y = targets(held_out)
    max_len = int(config["max_length"])
    sample = texts[: args.max_parity_texts]
    torch_logits = predict_logits(model, tokenizer, sample, max_len)
    ort_fp32 = TextClassifier(fp32, tok_path)
    diffs = []
    for i, text in enumerate(sample):
        batch = encode_batch(tokenizer, [text], max_len)
        logits = ort_fp32.run_logits(batch["input_ids"].numpy(), batch["attention_mask"].numpy())
        diffs.append(float(np.abs(logits[0] - torch_logits[i]).max()))
    ort_int8 = TextClassifier(int8, tok_path)
    thresholds = np.array([config["thresholds"][o] for o in OUTPUTS], dtype=np.float32)
    p_fp32, p_int8 = ort_fp32.predict(texts), ort_int8.predict(texts)
    parity = {
        "fp32_vs_torch_max_abs_logit_diff": max(diffs),
        "fp32_vs_torch_texts": len(sample),
        "macro_f1_fp32": macro_f1(p_fp32, y, thresholds),
        "macro_f1_int8": macro_f1(p_int8, y, thresholds),
        "fraud_f1_fp32": float(f1_score(y[:, 0], p_fp32[:, 0] >= thresholds[0])),
        "fraud_f1_int8": float(f1_score(y[:, 0], p_int8[:, 0] >= thresholds[0])),
        "held_out_texts": len(texts),
        "size_mb_fp32": round(fp32.stat().st_size / 2**20, 1),
        "size_mb_int8": round(int8.stat().st_size / 2**20, 1),
        "version": version,
    }
    parity["macro_f1_drop_points"] = round(100 * (parity["macro_f1_fp32"] - parity["macro_f1_int8"]), 3)
    parity["passed"] = parity["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4 and parity["macro_f1_drop_points"] <= 0.5
    (out / "parity.json").write_text(json.dumps(parity, indent=2))
    log.info("parity: %s (%.1fs)", parity, time.time() - started)
    if args.strict_parity and not parity["passed"]:
        raise SystemExit(f"parity check failed: {parity}")
    summary = Path(args.model_dir) / "training_summary.json"
    if summary.exists():
        shutil.copy(summary, out / "training_summary.json")
    return out


if __name__ == "__main__":
    main()

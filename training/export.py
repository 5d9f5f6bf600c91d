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
from transformers import HfArgumentParser

from fanzha.datasets.corpus import load_corpus
from fanzha.models.labels import OUTPUTS
from fanzha.models.normalize import normalize
from fanzha.models.text import TextClassifier, tokenizer_sha256

from .graph import add_features_output, set_metadata
from .metrics import decision_thresholds, dev_metrics, targets
from .model import FraudClassifier, encode_batch, predict_logits
from .vocab import prune_model_vocab, prune_tokenizer, select_pieces

log = logging.getLogger("fanzha.export")


@dataclass
class ExportArguments:
    model_dir: str = field(
        default="runs/model", metadata={"help": "fine-tuned checkpoint (fanzha.training.train output)"}
    )
    output_dir: str = field(
        default="models/default", metadata={"help": "where model.onnx (int8) + tokenizer.json go"}
    )
    work_dir: str = field(
        default="runs/export", metadata={"help": "scratch dir for the fp32 and pre-processed graphs"}
    )
    corpus: str | None = field(
        default=None, metadata={"help": "corpus used for pruning and parity (default: datasets/corpus)"}
    )
    prune_vocab: bool = field(
        default=True, metadata={"help": "drop vocabulary pieces CJK/ASCII text and the corpus never need"}
    )
    ascii_top: int = field(default=12000, metadata={"help": "multi-character ASCII pieces kept by pruning"})
    per_channel: bool = field(default=True, metadata={"help": "per-channel int8 weight scales"})
    reduce_range: bool = field(
        default=True,
        metadata={
            "help": "7-bit weights: avoids u8s8 saturation on AVX2 CPUs without VNNI (kept the int8 F1 drop under 0.5 point here)"
        },
    )
    version: str | None = field(
        default=None, metadata={"help": "model version string (default: fanzha-text-<date>-<layers>L)"}
    )
    window: int = field(
        default=64, metadata={"help": "run-time window length in tokens for long texts (half-window overlap)"}
    )
    opset: int = field(default=17, metadata={"help": "ONNX opset"})
    exporter: str = field(
        default="torchscript", metadata={"help": "torchscript (fusable attention) or dynamo"}
    )
    fuse: bool = field(
        default=True, metadata={"help": "apply onnxruntime's transformer fusions before quantising"}
    )
    quantize_attention: bool = field(
        default=True,
        metadata={"help": "int8 inside the fused Attention op too (faster; off keeps attention fp32)"},
    )
    max_parity_texts: int = field(
        default=400, metadata={"help": "texts used for the fp32 logits parity check"}
    )
    strict_parity: bool = field(default=True, metadata={"help": "exit non-zero when a parity gate fails"})


class _Exportable(torch.nn.Module):
    """Inference-only wrapper: no dropout, logits out."""

    def __init__(self, model: FraudClassifier) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask)


def export_fp32(model: FraudClassifier, path: Path, opset: int, exporter: str = "torchscript") -> None:
    """fp32 ONNX with dynamic batch and sequence axes.

    "torchscript" (default) exports eager attention, whose graph onnxruntime's transformer optimizer fuses
    into its Attention kernel (measured 1.4x faster int8 than the dynamo graph, whose SDPA pattern it does
    not recognise); "dynamo" is torch's default exporter.
    """
    example = (torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    wrapper = _Exportable(model).eval()
    names = {
        "input_names": ["input_ids", "attention_mask"],
        "output_names": ["logits"],
        "opset_version": opset,
    }
    if exporter == "dynamo":
        batch, seq = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=512)
        dynamic = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
        torch.onnx.export(
            wrapper, example, str(path), dynamic_shapes=dynamic, dynamo=True, external_data=False, **names
        )
        return
    if exporter != "torchscript":
        raise ValueError(f"unknown exporter {exporter!r}: use torchscript or dynamo")
    model.encoder.set_attn_implementation("eager")
    dynamic = {
        "input_ids": {0: "batch", 1: "sequence"},
        "attention_mask": {0: "batch", 1: "sequence"},
        "logits": {0: "batch"},
    }
    torch.onnx.export(wrapper, example, str(path), dynamic_axes=dynamic, dynamo=False, **names)


def fuse_transformer_ops(fp32: Path, out: Path, encoder_config) -> bool:
    """onnxruntime's BERT fusions (Attention, SkipLayerNorm, BiasGelu, EmbedLayerNorm); False if not a BERT-like model."""
    if encoder_config.model_type not in ("bert", "roberta", "xlm-roberta"):
        log.info("no transformer fusions for model type %s", encoder_config.model_type)
        return False
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(
        str(fp32),
        model_type="bert",
        num_heads=encoder_config.num_attention_heads,
        hidden_size=encoder_config.hidden_size,
    )
    log.info("fused operators: %s", {k: v for k, v in opt.get_fused_operator_statistics().items() if v})
    opt.save_model_to_file(str(out))
    return True


def quantize_int8(
    fp32: Path,
    int8: Path,
    work: Path,
    per_channel: bool,
    reduce_range: bool,
    fused: bool,
    attention: bool = True,
) -> None:
    source = fp32
    if not fused:  # a fused graph is already optimised; pre-processing would choke on its contrib ops
        source = work / "model.pre.onnx"
        quant_pre_process(str(fp32), str(source), skip_symbolic_shape=True)
    op_types = ["MatMul", "Gather", "EmbedLayerNormalization"] + (["Attention"] if attention else [])
    quantize_dynamic(
        str(source),
        str(int8),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        op_types_to_quantize=op_types,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def main(argv: list[str] | None = None) -> Path:
    (args,) = HfArgumentParser(ExportArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    out, work = Path(args.output_dir), Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    # 1. load and prune
    model, tokenizer, config = FraudClassifier.load(args.model_dir)
    records = load_corpus(args.corpus)
    if args.prune_vocab:
        keep = select_pieces(
            tokenizer, [normalize(r["text"]).text for r in records], ascii_top=args.ascii_top
        )
        before = tokenizer.get_vocab_size()
        tokenizer = prune_tokenizer(tokenizer, keep)
        prune_model_vocab(model.encoder, keep)
        log.info("vocabulary %d → %d pieces", before, len(keep))

    # 2. fp32 ONNX + metadata
    # everything is built in work_dir; the output dir is only touched once the parity gates pass
    raw, fp32, int8 = work / "model.raw.onnx", work / "model.fp32.onnx", work / "model.onnx"
    tok_path = work / "tokenizer.json"
    tokenizer.save(str(tok_path))
    export_fp32(model, raw, args.opset, args.exporter)
    fused = args.fuse and fuse_transformer_ops(raw, fp32, model.encoder.config)
    if not fused:
        shutil.copy(raw, fp32)
    layers = getattr(model.encoder.config, "num_hidden_layers", "?")
    version = args.version or f"fanzha-text-{dt.date.today():%Y%m%d}-{layers}L-int8"
    metadata = {
        "fanzha.outputs": json.dumps(list(config["outputs"])),
        "fanzha.thresholds": json.dumps({k: round(float(v), 4) for k, v in config["thresholds"].items()}),
        "fanzha.max_length": str(config["max_length"]),
        "fanzha.window": str(min(args.window, int(config["max_length"]))),
        "fanzha.tokenizer_sha256": tokenizer_sha256(tok_path),
        "fanzha.version": version,
        "fanzha.base_model": str(config.get("base_model", "")),
        "fanzha.pooling": config.get("pooling", "mean"),
    }
    set_metadata(fp32, {**metadata, "fanzha.version": version.replace("-int8", "-fp32")})

    # 3. int8
    quantize_int8(fp32, int8, work, args.per_channel, args.reduce_range, fused, args.quantize_attention)
    add_features_output(int8)  # the pooled vector beside the logits: conversations and `fanzha adapt` read it
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
    int8_probs = ort_int8.predict(texts)
    m_fp32 = dev_metrics(ort_fp32.predict(texts), y, thresholds)
    m_int8 = dev_metrics(int8_probs, y, thresholds)
    # review and block are tuned on the shipped int8 model's dev scores (never test), on the score the Detector
    # decides on (the max over the heads); label thresholds stay as training tuned them
    dev = np.array([r["split"] == "dev" for r in held_out])
    decision = decision_thresholds(int8_probs[dev], y[dev])
    block = decision["block"]
    metadata["fanzha.thresholds"] = json.dumps({**json.loads(metadata["fanzha.thresholds"]), **decision})
    set_metadata(int8, metadata)
    parity = {
        "fp32_vs_torch_max_abs_logit_diff": max(diffs),
        "fp32_vs_torch_texts": len(sample),
        "macro_f1_fp32": m_fp32["label_macro_f1"],
        "macro_f1_int8": m_int8["label_macro_f1"],
        "fraud_f1_fp32": m_fp32["fraud_f1"],
        "fraud_f1_int8": m_int8["fraud_f1"],
        "held_out_texts": len(texts),
        "size_mb_fp32": round(fp32.stat().st_size / 2**20, 1),
        "size_mb_int8": round(int8.stat().st_size / 2**20, 1),
        "version": version,
        "block_threshold": block,
        "review_threshold": decision["fraud"],
        "exporter": args.exporter,
        "fused": fused,
    }
    parity["macro_f1_drop_points"] = round(100 * (parity["macro_f1_fp32"] - parity["macro_f1_int8"]), 3)
    parity["passed"] = (
        parity["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4 and parity["macro_f1_drop_points"] <= 0.5
    )
    (work / "parity.json").write_text(json.dumps(parity, indent=2))
    log.info("parity: %s (%.1fs)", parity, time.time() - started)
    if args.strict_parity and not parity["passed"]:
        raise SystemExit(f"parity check failed (nothing written to {out}): {parity}")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "tokenizer.json", "parity.json"):
        shutil.copy(work / name, out / name)
    summary = Path(args.model_dir) / "training_summary.json"
    if summary.exists():
        shutil.copy(summary, out / "training_summary.json")
    return out


if __name__ == "__main__":
    main()

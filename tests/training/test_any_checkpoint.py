"""`--base_model` takes any Hugging Face checkpoint: here a tiny WordPiece BERT built by the test itself."""

import json

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from fanzha.datasets.corpus import load_corpus
from fanzha.models import TextClassifier
from fanzha.models.normalize import normalize


def build_wordpiece_bert(path, corpus) -> None:
    chars = sorted({c for r in load_corpus(corpus) for c in normalize(r["text"]).text if not c.isspace()})
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, "##a", "##b"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    ).save_pretrained(path)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(path)


def test_train_and_export_a_wordpiece_checkpoint(tmp_path, tiny_corpus) -> None:
    from fanzha.training import export, train

    base = tmp_path / "wp-base"
    build_wordpiece_bert(base, tiny_corpus)
    trained = train.main(
        [
            "--base_model",
            str(base),
            "--output_dir",
            str(tmp_path / "wp-model"),
            "--corpus",
            str(tiny_corpus),
            "--epochs",
            "1",
            "--batch_size",
            "8",
            "--max_length",
            "24",
            "--threads",
            "1",
        ]
    )
    out = export.main(
        [
            "--model_dir",
            str(trained),
            "--output_dir",
            str(tmp_path / "wp-onnx"),
            "--work_dir",
            str(tmp_path / "wp-work"),
            "--corpus",
            str(tiny_corpus),
            "--version",
            "wp",
            "--ascii_top",
            "0",
            "--strict_parity",
            "false",
        ]
    )
    parity = json.loads((out / "parity.json").read_text())
    assert parity["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4
    clf = TextClassifier.load(out, threads=1)
    assert clf.predict(["免费领取"]).shape == (1, 5)
    assert (
        clf.tokenizer.get_vocab_size()
        <= Tokenizer.from_file(str(trained / "tokenizer.json")).get_vocab_size()
    )

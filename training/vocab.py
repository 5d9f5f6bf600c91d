"""Vocabulary pruning: keep the pieces Chinese social-media text needs, drop the rest of a 250k vocabulary.

multilingual-e5-small spends 96M of its 118M parameters on a 250k-piece embedding table for 100 languages.
We keep: special tokens; every piece made only of CJK ideographs (so Unigram segmentation of CJK text is
unchanged: every piece Viterbi could use is still there); single characters of ASCII and CJK punctuation;
the most frequent ASCII pieces; and every piece the corpus actually uses. Works on Unigram and WordPiece
`tokenizer.json` models (the two families of Chinese-capable encoders).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable

import torch
from tokenizers import Tokenizer

from fanzha.models.normalize import is_cjk


def _is_basic_symbol(ch: str) -> bool:
    cp = ord(ch)
    return 0x20 <= cp < 0x7F or 0x3000 <= cp <= 0x303F or 0x2000 <= cp <= 0x206F or 0xA0 <= cp <= 0xFF


_MARKERS = ("▁", "##")


def _strip(piece: str) -> str:
    for marker in _MARKERS:
        if piece.startswith(marker):
            return piece[len(marker) :]
    return piece


def _pieces(tok_json: dict) -> list[str]:
    model = tok_json["model"]
    if model["type"] == "Unigram":
        return [p for p, _ in model["vocab"]]
    if model["type"] == "WordPiece":
        vocab = model["vocab"]
        return sorted(vocab, key=vocab.get)
    raise ValueError(f"vocabulary pruning supports Unigram and WordPiece tokenizers, not {model['type']}")


def select_pieces(tokenizer: Tokenizer, texts: Iterable[str], ascii_top: int = 6000) -> list[int]:
    """Ids of the pieces to keep, ascending (so special tokens keep their relative order)."""
    tok_json = json.loads(tokenizer.to_str())
    pieces = _pieces(tok_json)
    keep = {t["id"] for t in tok_json.get("added_tokens", [])}
    ascii_multi = []
    for i, piece in enumerate(pieces):
        body = _strip(piece)
        if not body:
            keep.add(i)
        elif all(is_cjk(c) for c in body):
            keep.add(i)
        elif len(body) == 1 and _is_basic_symbol(body):
            keep.add(i)
        elif body.isascii():
            ascii_multi.append(i)
    # Unigram pieces are stored most frequent first; WordPiece has no scores, so id order is the proxy.
    keep.update(ascii_multi[:ascii_top])
    for encoding in tokenizer.encode_batch(list(texts), add_special_tokens=False):
        keep.update(encoding.ids)
    return sorted(keep)


def prune_tokenizer(tokenizer: Tokenizer, keep_ids: list[int]) -> Tokenizer:
    """A tokenizer over only `keep_ids`, renumbered 0..n-1 in the same order."""
    tok_json = copy.deepcopy(json.loads(tokenizer.to_str()))
    new_id = {old: new for new, old in enumerate(keep_ids)}
    model = tok_json["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][i] for i in keep_ids]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    elif model["type"] == "WordPiece":
        by_id = {v: k for k, v in model["vocab"].items()}
        model["vocab"] = {by_id[old]: new for new, old in enumerate(keep_ids)}
    else:
        raise ValueError(f"vocabulary pruning supports Unigram and WordPiece tokenizers, not {model['type']}")
    for token in tok_json.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    post = tok_json.get("post_processor") or {}
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in processors:
        for spec in (proc.get("special_tokens") or {}).values():
            spec["ids"] = [new_id[i] for i in spec["ids"]]
        for key in ("sep", "cls"):  # BertProcessing / RobertaProcessing store [token, id]
            if key in proc:
                proc[key] = [proc[key][0], new_id[proc[key][1]]]
    if tok_json.get("padding"):
        tok_json["padding"]["pad_id"] = new_id[tok_json["padding"]["pad_id"]]
    return Tokenizer.from_str(json.dumps(tok_json, ensure_ascii=False))


def prune_model_vocab(model: torch.nn.Module, keep_ids: list[int]) -> None:
    """Keep only the embedding rows in `keep_ids` (in that order) of any HF encoder, in place."""
    emb = model.get_input_embeddings()
    new = torch.nn.Embedding(len(keep_ids), emb.embedding_dim, padding_idx=None)
    new.weight.data = emb.weight.data[torch.tensor(keep_ids)].clone()
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep_ids)
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old = getattr(model.config, attr, None)
        if old is not None and old in keep_ids:
            setattr(model.config, attr, keep_ids.index(old))

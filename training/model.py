"""The trainable classifier: any Hugging Face encoder + masked mean pooling + one linear layer.

Five sigmoid outputs: `fraud` (any label applies) followed by the four scam labels (models/labels.py).
Mean pooling matches how e5 was pre-trained, so fine-tuning starts from meaningful sentence vectors.
`save(dir)` / `load(dir)` wrap a HF checkpoint, `head.safetensors` and a small `fanzha_classifier.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

from fanzha.models.labels import OUTPUTS
from fanzha.models.text import pad_token_id

CONFIG_NAME = "fanzha_classifier.json"


class FraudClassifier(torch.nn.Module):
    def __init__(
        self, encoder: torch.nn.Module, num_outputs: int = len(OUTPUTS), dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_outputs)

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The masked mean of the encoder's last hidden states: the sentence vector every head reads."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(input_ids, attention_mask)))

    @classmethod
    def from_base(cls, base_model: str | Path) -> FraudClassifier:
        """A fresh classifier on top of any HF encoder checkpoint directory."""
        return cls(_load_encoder(base_model))

    def save(self, output_dir: str | Path, tokenizer: Tokenizer, extra: dict | None = None) -> None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(out)
        save_file(
            {k: v.contiguous() for k, v in self.head.state_dict().items()}, str(out / "head.safetensors")
        )
        tokenizer.save(str(out / "tokenizer.json"))
        config = {"outputs": list(OUTPUTS), "pooling": "mean", **(extra or {})}
        (out / CONFIG_NAME).write_text(json.dumps(config, ensure_ascii=False, indent=2))

    @classmethod
    def load(cls, model_dir: str | Path) -> tuple[FraudClassifier, Tokenizer, dict]:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG_NAME).read_text())
        model = cls(_load_encoder(model_dir), num_outputs=len(config["outputs"]))
        model.head.load_state_dict(load_file(str(model_dir / "head.safetensors")))
        return model.eval(), Tokenizer.from_file(str(model_dir / "tokenizer.json")), config


def _load_encoder(path: str | Path) -> torch.nn.Module:
    """Any HF encoder; BERT-family models without their unused CLS pooler (we mean-pool)."""
    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    kwargs = {"add_pooling_layer": False} if model_type in ("bert", "roberta", "xlm-roberta") else {}
    return AutoModel.from_pretrained(str(path), **kwargs)


def load_tokenizer(model_dir: str | Path) -> Tokenizer:
    """The fast tokenizer of any HF checkpoint, as a plain `tokenizers.Tokenizer` (what runtime uses)."""
    path = Path(model_dir) / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    return AutoTokenizer.from_pretrained(str(model_dir)).backend_tokenizer  # converts slow vocabularies


def encode_batch(tokenizer: Tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """Token ids (head-truncated to max_length, specials kept) padded to the longest text of the batch."""
    encodings = tokenizer.encode_batch(texts)
    pid = pad_token_id(tokenizer)
    ids = []
    for enc in encodings:
        seq = enc.ids
        if len(seq) > max_length:
            seq = seq[: max_length - 1] + seq[-1:]  # keep the closing special token
        ids.append(seq)
    width = max(len(s) for s in ids)
    input_ids = np.full((len(ids), width), pid, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = seq
        mask[i, : len(seq)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


@torch.no_grad()
def predict_logits(
    model: FraudClassifier, tokenizer: Tokenizer, texts: list[str], max_length: int, batch_size: int = 64
) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
    out = np.zeros((len(texts), model.head.out_features), dtype=np.float32)
    for i in range(0, len(texts), batch_size):
        idx = order[i : i + batch_size]
        batch = encode_batch(tokenizer, [texts[j] for j in idx], max_length)
        out[idx] = model(**{k: v.to(device) for k, v in batch.items()}).float().cpu().numpy()
    return out

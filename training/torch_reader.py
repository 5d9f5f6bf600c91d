"""Score a torch training checkpoint the way the runtime scores an ONNX model: same windows, same Detector.

    detector = Detector(TorchTextClassifier.load("runs/model", device="cuda"))

Comparing candidate models (`fanzha.training.sweep`) needs every candidate's test and external figures,
and exporting each one to int8 first would cost minutes per model. This reader feeds the runtime's own
token windows to the fp32 torch model (on a GPU when there is one), so the figures differ from the shipped
int8 model's only by quantisation. Review and block thresholds are tuned on dev exactly as export tunes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fanzha.models.text import DEFAULT_WINDOW, WindowReader

from .model import FraudClassifier
from .thresholds import tune


def pick_device(device: str = "auto") -> torch.device:
    """`auto`: the first GPU when torch sees one, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


class TorchTextClassifier(WindowReader):
    def __init__(
        self,
        model: FraudClassifier,
        tokenizer,
        config: dict,
        device: str = "auto",
        batch_size: int = 256,
        version: str = "torch-checkpoint",
    ) -> None:
        super().__init__(tokenizer, int(config["max_length"]), DEFAULT_WINDOW, batch_size)
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.outputs = list(config["outputs"])
        self.thresholds = {k: float(v) for k, v in config["thresholds"].items()}
        self.version = version

    @classmethod
    def load(
        cls, model_dir: str | Path, device: str = "auto", corpus: str | None = None
    ) -> TorchTextClassifier:
        """The checkpoint's label thresholds; review and block tuned on its dev scores as export tunes them."""
        model, tokenizer, config = FraudClassifier.load(model_dir)
        reader = cls(model, tokenizer, config, device, version=f"torch:{Path(model_dir).name}")
        reader.thresholds.update(tune(reader, corpus))
        return reader

    @torch.no_grad()
    def run_output(self, name: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if name != "logits":
            raise ValueError(f"a torch checkpoint reads logits only, not {name}")
        ids = torch.from_numpy(input_ids.astype(np.int64)).to(self.device)
        mask = torch.from_numpy(attention_mask.astype(np.int64)).to(self.device)
        return self.model(ids, mask).float().cpu().numpy()

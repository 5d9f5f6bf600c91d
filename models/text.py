"""The text classifier at request time: `tokenizers` + onnxruntime, nothing else.

Everything the runtime needs to know about a model lives in the ONNX file's metadata (label map,
thresholds, window length, tokenizer hash, version), so a model file cannot silently run with the wrong
tokenizer. Texts longer than one window are scored in overlapping windows and each output takes its
maximum over the windows: a lure at the end of a long post is not truncated away.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .errors import ModelError
from .settings import settings

DEFAULT_MODEL_DIR = Path(__file__).with_name("default")
# Long texts are read in windows of this many tokens, each sharing half with the next, so every phrase up to
# half a window long is seen whole in a window that is at least half its own text. Windows the size of
# the training messages (median ~30 tokens) keep a short lure from being averaged away by pages of filler.
DEFAULT_WINDOW = 64
# the graph output a conversation model and `fanzha adapt` read: [logits | mean-pooled sentence vector] per window
FEATURES = "fanzha_features"


def tokenizer_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_threads() -> int:
    """FANZHA_THREADS, else all cores (the service shares the cores out over its workers and passes its count)."""
    return settings().threads_per_process()


def pad_token_id(tokenizer: Tokenizer) -> int:
    """The padding id of an XLM-R-style (<pad>) or BERT-style ([PAD]) vocabulary, else 0."""
    return next((i for t in ("<pad>", "[PAD]") if (i := tokenizer.token_to_id(t)) is not None), 0)


class WindowReader:
    """Tokenises texts into windows and reads one graph output per window; subclasses supply `run_output`.

    The ONNX session below is the runtime's backend; training scores a torch checkpoint through the same
    windows (fanzha.training.torch_reader), so what it measures is what the service would answer.
    """

    outputs: list[str]
    thresholds: dict[str, float]
    version: str

    def __init__(self, tokenizer: Tokenizer, max_length: int, window: int, batch_size: int = 1) -> None:
        self.max_length = max_length
        self.window = min(max_length, window)
        self.batch_size = batch_size
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        with_specials = self.tokenizer.encode("x").ids
        bare = self.tokenizer.encode("x", add_special_tokens=False).ids
        cut = with_specials.index(bare[0]) if bare else len(with_specials)
        self._prefix, self._suffix = with_specials[:cut], with_specials[cut + len(bare) :]
        self._pad = pad_token_id(self.tokenizer)

    def run_output(self, name: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def windows(self, text: str) -> list[list[int]]:
        """Token-id windows covering the whole text, each ≤ `window` tokens including special tokens."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        body = self.window - len(self._prefix) - len(self._suffix)
        if len(ids) <= body:
            return [self._prefix + ids + self._suffix]
        step = max(1, body // 2)
        starts = range(0, len(ids) - body + step, step)  # the last window reaches the end
        return [self._prefix + ids[s : s + body] + self._suffix for s in starts]

    def run_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.run_output("logits", input_ids, attention_mask)

    def predict(self, texts: list[str]) -> np.ndarray:
        """(len(texts), len(outputs)) probabilities; texts should already be normalised."""
        owner, logits = self.window_outputs(texts, "logits")
        probs = np.zeros((len(texts), len(self.outputs)), dtype=np.float32)
        if len(owner):
            np.maximum.at(probs, owner, 1.0 / (1.0 + np.exp(-logits)))
        return probs

    def window_outputs(self, texts: list[str], output: str = "logits") -> tuple[np.ndarray, np.ndarray]:
        """One graph output per window of every text: (owner text index per window, stacked outputs).

        `predict` takes the max of the logits over a text's windows; adaptation and conversation scoring read
        FEATURES (logits and the pooled sentence vector) the same way.
        """
        windows: list[list[int]] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            for w in self.windows(text):
                windows.append(w)
                owner.append(i)
        if not windows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.asarray(owner, dtype=np.int64), self.run_windows(windows, output)

    def token_ids(self, text: str) -> list[int]:
        """The text's token ids without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def run_windows(self, windows: list[list[int]], output: str = "logits") -> np.ndarray:
        """One graph output per window (token ids with special tokens), batched by similar length."""
        out: np.ndarray | None = None
        order = np.argsort([len(w) for w in windows], kind="stable")  # similar lengths batch together
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            width = max(len(windows[j]) for j in idx)
            input_ids = np.full((len(idx), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, j in enumerate(idx):
                input_ids[row, : len(windows[j])] = windows[j]
                mask[row, : len(windows[j])] = 1
            values = self.run_output(output, input_ids, mask)
            if out is None:
                out = np.zeros((len(windows), values.shape[1]), dtype=np.float32)
            out[idx] = values
        return out


class TextClassifier(WindowReader):
    """Sigmoid probabilities for the model's outputs (see `outputs`) from normalised texts, by onnxruntime."""

    def __init__(
        self,
        model_path: str | Path,
        tokenizer_path: str | Path | None = None,
        threads: int | None = None,
        batch_size: int = 1,
    ) -> None:
        model_path = Path(model_path)
        tokenizer_path = Path(tokenizer_path) if tokenizer_path else model_path.with_name("tokenizer.json")
        for p in (model_path, tokenizer_path):
            if not p.is_file():
                raise ModelError(f"model file not found: {p}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1  # onnxruntime ignores OMP_NUM_THREADS: be explicit
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"cannot load ONNX model {model_path}: {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [
            k
            for k in ("fanzha.outputs", "fanzha.thresholds", "fanzha.max_length", "fanzha.tokenizer_sha256")
            if k not in meta
        ]
        if missing:
            raise ModelError(
                f"{model_path} lacks fanzha metadata {missing}: export it with fanzha.training.export"
            )
        if meta["fanzha.tokenizer_sha256"] != tokenizer_sha256(tokenizer_path):
            raise ModelError(
                f"{tokenizer_path} is not the tokenizer {model_path} was exported with (SHA-256 mismatch)"
            )
        self.outputs: list[str] = json.loads(meta["fanzha.outputs"])
        self.thresholds: dict[str, float] = json.loads(meta["fanzha.thresholds"])
        self.version = meta.get("fanzha.version", model_path.stem)
        self.path = model_path
        # int8 activations are quantised per run over the whole batch, so a batched window's score moves with its
        # neighbours (measured on dev+test: up to 0.38, 4 of 2,130 decisions flipped at batch 32). One window per
        # run makes a verdict independent of what else is being scored, for ~25 % less throughput.
        max_length = int(meta["fanzha.max_length"])
        super().__init__(
            Tokenizer.from_file(str(tokenizer_path)),
            max_length,
            int(meta.get("fanzha.window", DEFAULT_WINDOW)),
            batch_size,
        )

    @classmethod
    def load(cls, model_dir: str | Path | None = None, threads: int | None = None) -> TextClassifier:
        """The model in `model_dir` (model.onnx + tokenizer.json); default: the committed model."""
        model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        return cls(model_dir / "model.onnx", model_dir / "tokenizer.json", threads=threads)

    def run_output(self, name: str, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return self.session.run([name], feeds)[0]

    def has_output(self, name: str) -> bool:
        return any(o.name == name for o in self.session.get_outputs())

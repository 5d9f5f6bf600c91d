"""Conversations: each message read with the messages before it, and the chat scored as a funnel.

    from fanzha.models import Detector, Message
    detector = Detector.load()
    verdict = detector.classify_conversation([
        Message("星光应援站", "恭喜你成为本月幸运粉丝"), Message("星光应援站", "哥哥签名照免费送"),
        Message("管理-阿豪", "加管理员扣扣登记地址"), Message("管理-阿豪", "登记先转29元认证费，寄出后原路退")])
    verdict.decision, verdict.trigger_index, [m.stage for m in verdict.messages]

How a message is read (the head is `conversation.onnx` beside the text model, fit by
fanzha.training.conversation on the authored conversation corpus):
1. The text model's encoder reads the message once, alone: its FEATURES output gives the label logits and the
   pooled sentence vector (a MessageReading). The state keeps the readings of the last CONTEXT_MESSAGES - 1
   messages, so a message never re-reads its context: it costs one encoder run, like /classify_text.
2. A head on [mean vector of the messages before | this message's vector | their highest and this message's
   label probabilities | speaker flags] gives the message's stage (bait, channel_move, payment_demand …), the
   conversation's labels as of this message, and a local score: P(this chat is a scam, as shown by now). It is
   linear, plus (when the trainer chose one) a ReLU layer on the label and local logits, so that the context can
   change what a message means instead of only adding to it. Read after what came before, 交校服费 in a class
   group and the parent's warning that quotes 激活费 are cleared; 登记一下地址 after a prize is not.
3. The funnel: running maxima of the stage probabilities and scores (a state of fixed size, so a streamed
   conversation costs the same per message however long it grows) feed a logistic layer that gives the
   conversation's score after each message. The conversation's fraud_score is the highest so far, and its
   trigger the first message at which that reached the review threshold.

`classify` and the streaming `step` are the same fold over messages, so a conversation scored whole and one
streamed message by message get the same verdict.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import InputError, LimitExceeded, ModelError
from .evidence import extract
from .labels import LABELS
from .normalize import Normalized, normalize
from .text import FEATURES, TextClassifier
from .verdict import ConversationVerdict, Evidence, MessageEvidence, MessageVerdict

HEAD_FILE = "conversation.onnx"  # beside model.onnx
MAX_MESSAGES = 200  # per conversation scored at once (a stream has no limit: its state is bounded)
CONTEXT_MESSAGES = 6  # the current message and the five before it
STREAM_WINDOW = 12  # messages a stream's answer lists (and its state keeps for evidence)
MAX_EVIDENCE = 24  # evidence items a streamed conversation keeps (the most recent; a whole one keeps all)
SCORE_DECIMALS = 4  # a conversation is decided on its score rounded to this (the head's training mirrors it)
STATE_VERSION = 2  # the stored state's layout: a state of another layout starts the conversation afresh
# the head's input layout (written into conversation.onnx; a head of another layout is refused at load)
CONTEXT_LAYOUT = "message-readings/1"
STAGES = (
    "none",
    "bait",
    "channel_move",
    "payment_demand",
    "credential_request",
    "task_escalation",
    "pressure",
    "impersonation",
    "warning",
)
FUNNEL_STAGES = STAGES[1:8]  # the moves of a scam (warning is the opposite; none is neither)

# the funnel's inputs, in order: what the fixed-size state remembers of the messages so far
FUNNEL_FEATURES = (
    "local",
    "local_max",
    *(f"{s}_max" for s in FUNNEL_STAGES),
    "warning_max",
    "stages_seen",
    "message_fraud_max",
    "context_fraud",
    "context_fraud_max",
)
_VECTOR_DTYPE = np.dtype("<f2")  # a reading's vector as the state stores it (and as every reader sees it)


@dataclass(frozen=True)
class Message:
    sender: str
    text: str
    id: str | None = None
    ts: float | None = None

    @classmethod
    def from_dict(cls, d: object, where: str = "") -> Message:
        """A message from its JSON form, or InputError naming what is wrong (`where`: e.g. "message 3: ")."""
        if not isinstance(d, dict):
            raise InputError(f"{where}must be an object with sender and text, got {type(d).__name__}")
        text = d.get("text")
        if text is None:
            raise InputError(f"{where}has no text")
        sender = d.get("sender")
        if not isinstance(sender, str) or not sender.strip():
            raise InputError(f"{where}sender must be a non-empty string")
        mid = d.get("id")
        if mid is not None and not isinstance(mid, str | int):
            raise InputError(f"{where}id must be a string or a number")
        ts = d.get("ts")
        if ts is not None and (
            isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)
        ):
            raise InputError(f"{where}ts must be a number (seconds since the epoch)")
        return cls(sender=sender, text=text, id=None if mid is None else str(mid), ts=ts)


def conversation_from_dict(obj: dict) -> tuple[Any, list[Message]]:
    """(its id, its messages) from a {"id", "messages": [{"sender", "text", "id"?, "ts"?}]} object, or InputError
    naming the problem (the batch readers' and the CLI's input line)."""
    messages = obj.get("messages")
    if messages is None:
        raise InputError("no `messages` list")
    if not isinstance(messages, list):
        raise InputError(f"`messages` must be a list, got {type(messages).__name__}")
    return obj.get("id"), [Message.from_dict(m, f"message {i}: ") for i, m in enumerate(messages)]


def validate_messages(messages: Sequence[Message], text_check) -> list[str]:
    """InputError for an empty conversation, too many messages, a bad text or a repeated id; returns the
    warnings (timestamps out of order: arrival order is kept)."""
    if not messages:
        raise InputError("the conversation has no messages")
    if len(messages) > MAX_MESSAGES:
        raise LimitExceeded(
            f"the conversation has {len(messages)} messages; the limit is {MAX_MESSAGES} "
            "(stream longer chats message by message: POST /conversation_message)"
        )
    seen: dict[str, int] = {}
    warnings: list[str] = []
    last_ts: float | None = None
    for i, m in enumerate(messages):
        try:
            text_check(m.text)
        except InputError as e:
            raise InputError(f"message {i}: {e}") from None
        if m.id is not None:
            if m.id in seen:
                raise InputError(f"message {i}: id {m.id!r} repeats message {seen[m.id]}'s")
            seen[m.id] = i
        if m.ts is not None:
            if last_ts is not None and m.ts < last_ts:
                warnings.append(out_of_order(i, m.ts, last_ts))
            last_ts = m.ts if last_ts is None else max(last_ts, m.ts)
    return warnings


def out_of_order(index: int, ts: float, latest: float) -> str:
    return f"message {index}: ts {ts:g} is earlier than an earlier message's ({latest:g}); scored in arrival order"


@dataclass
class ConversationState:
    """What a conversation remembers between messages: a fixed-size summary, never the whole chat."""

    v: int = STATE_VERSION
    count: int = 0  # messages so far
    window: list[list[Any]] = field(default_factory=list)  # recent [index, id, sender, text]
    # the readings of the last CONTEXT_MESSAGES - 1 messages: [sender, vector, probabilities]
    context: list[list[Any]] = field(default_factory=list)
    funnel: dict[str, float] = field(default_factory=dict)  # running maxima (FUNNEL_FEATURES' *_max)
    label_max: dict[str, float] = field(default_factory=dict)
    score: float = 0.0  # the conversation's score: the highest after any message
    trigger_index: int | None = None
    recent: list[dict[str, Any]] = field(default_factory=list)  # MessageVerdict dicts of the window
    evidence: list[dict[str, Any]] = field(default_factory=list)  # the most recent MAX_EVIDENCE items
    last_ts: float | None = None
    warnings: list[str] = field(default_factory=list)  # the most recent few

    def to_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str) -> ConversationState | None:
        """The stored state, or None when it was written in another layout (the caller starts afresh)."""
        try:
            d = json.loads(s)
            return cls(**d) if d.get("v") == STATE_VERSION else None
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class MessageReading:
    """The encoder on one message alone: what the messages after it read as their context."""

    vector: np.ndarray  # pooled sentence vector (the mean over the message's windows), float16-exact
    probs: np.ndarray  # the text model's label probabilities (the max over its windows)

    def to_json(self, sender: str) -> list[Any]:
        packed = base64.b64encode(self.vector.astype(_VECTOR_DTYPE).tobytes()).decode("ascii")
        return [sender, packed, [round(float(p), 5) for p in self.probs]]

    @classmethod
    def from_json(cls, item: list[Any]) -> tuple[str, MessageReading]:
        sender, packed, probs = item
        vector = np.frombuffer(base64.b64decode(packed), dtype=_VECTOR_DTYPE).astype(np.float32)
        return sender, cls(vector, np.asarray(probs, dtype=np.float32))


@dataclass(frozen=True)
class Reading:
    """One message read by the head: its stage probabilities, label probabilities and local score."""

    stages: np.ndarray  # (len(STAGES),)
    labels: np.ndarray  # (len(LABELS),)
    local: float
    message_fraud: float  # the text model on the message alone
    context_fraud: float  # the text model's highest score on the messages before it (the context window)


class ConversationHead:
    """The small ONNX graph on top of the encoder: features → stage, label and local logits; and the funnel."""

    def __init__(self, path: str | Path, encoder: TextClassifier) -> None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(
                f"no conversation model at {path}: train one with "
                "`python -m fanzha.training.conversation --model_dir <the text model's dir>`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # a few thousand weights: threads cost more than they save
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"cannot load conversation model {path}: {e}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        try:
            self.version = meta["fanzha.version"]
            self.encoder_version = meta["fanzha.encoder_version"]
            self.thresholds: dict[str, float] = json.loads(meta["fanzha.thresholds"])
            funnel = json.loads(meta["fanzha.funnel"])
            stages = tuple(json.loads(meta["fanzha.stages"]))
        except (KeyError, ValueError) as e:
            raise ModelError(f"{path} lacks fanzha conversation metadata ({e})") from None
        if self.encoder_version != encoder.version:
            raise ModelError(
                f"{path} was fit on the features of {self.encoder_version}, not {encoder.version}: "
                "re-run fanzha.training.conversation for this text model"
            )
        if stages != STAGES or tuple(funnel["features"]) != FUNNEL_FEATURES:
            raise ModelError(f"{path} was written for another stage or funnel layout")
        if meta.get("fanzha.context") != CONTEXT_LAYOUT:
            raise ModelError(
                f"{path} reads context as {meta.get('fanzha.context', 'packed text')!r}, this runtime as "
                f"{CONTEXT_LAYOUT!r}: re-run fanzha.training.conversation for this text model"
            )
        self.funnel_weight = np.asarray(funnel["weight"], dtype=np.float64)
        self.funnel_bias = float(funnel["bias"])
        self.path = path

    def read(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(stage probabilities, label probabilities, local score) for one feature row."""
        stage_logits, label_logits, local_logit = self.session.run(
            ["stage_logits", "label_logits", "local_logit"],
            {"features": features[None, :].astype(np.float32)},
        )
        return softmax(stage_logits[0]), sigmoid(label_logits[0]), float(sigmoid(local_logit[0, 0]))

    def conversation_score(self, funnel_row: np.ndarray) -> float:
        return float(sigmoid(funnel_row @ self.funnel_weight + self.funnel_bias))


class ContextReader:
    """Reads each message once with the encoder, and builds the head's input row from that reading and the
    readings of the messages before it."""

    def __init__(self, encoder: TextClassifier) -> None:
        if not encoder.has_output(FEATURES):
            raise ModelError(
                f"{encoder.path} has no {FEATURES} output: re-export it (fanzha.training.export) or add it "
                "with fanzha.training.graph.add_features_output"
            )
        self.encoder = encoder
        self.k = len(encoder.outputs)

    def read(self, texts: Sequence[str]) -> list[MessageReading]:
        """Each (normalised) text's reading, every window of every text in one batched encoder call."""
        owner, out = self.encoder.window_outputs(list(texts), FEATURES)
        readings = []
        for i in range(len(texts)):
            rows = out[owner == i]
            vector = rows[:, self.k :].mean(axis=0).astype(_VECTOR_DTYPE).astype(np.float32)
            readings.append(MessageReading(vector, sigmoid(rows[:, : self.k].max(axis=0)).astype(np.float32)))
        return readings

    def features(
        self, previous: Sequence[tuple[str, MessageReading]], sender: str, message: MessageReading
    ) -> np.ndarray:
        """The head's input for `message` from `sender` after the (sender, reading) pairs before it, oldest
        first (the last CONTEXT_MESSAGES - 1 count)."""
        previous = list(previous[max(0, len(previous) - (CONTEXT_MESSAGES - 1)) :])
        if previous:
            context_vector = np.mean([r.vector for _, r in previous], axis=0)
            context_probs = np.max([r.probs for _, r in previous], axis=0)
        else:
            context_vector = np.zeros_like(message.vector)
            context_probs = np.zeros_like(message.probs)
        senders = [who for who, _ in previous]
        sender_changed = float(bool(senders) and senders[-1] != sender)
        new_sender = float(bool(senders) and sender not in senders)
        return np.concatenate(
            [
                context_vector,
                message.vector,
                context_probs,
                message.probs,
                np.array([sender_changed, new_sender]),
            ]
        ).astype(np.float32)

    def next_row(self, state: ConversationState, sender: str, encoded: MessageReading) -> np.ndarray:
        """The head's input for the next message of a conversation, whose reading the state then keeps (as
        stored: the fold sees the same numbers whether the state lived in memory or in a database)."""
        previous = [MessageReading.from_json(item) for item in state.context]
        state.context = [*state.context, encoded.to_json(sender)][-(CONTEXT_MESSAGES - 1) :]
        return self.features(previous, sender, encoded)

    def probabilities(self, features: np.ndarray) -> tuple[float, float]:
        """(the text model's fraud score on the message alone, its highest on the messages before) from a row."""
        probs = features[-2 - 2 * self.k : -2]  # [context probabilities | message probabilities]
        return float(probs[self.k :].max()), float(probs[: self.k].max())


class ConversationScorer:
    """Reads messages in context with the text model's encoder and the conversation head."""

    def __init__(self, encoder: TextClassifier, head: ConversationHead, decide, text_check) -> None:
        """`decide`: fraud score → pass/review/block (the head's tuned thresholds);
        `text_check`: the Detector's validation of one text."""
        self.reader = ContextReader(encoder)
        self.head = head
        self.decide = decide
        self.text_check = text_check

    @property
    def model_version(self) -> str:
        return self.head.version

    def read(self, features: np.ndarray) -> Reading:
        stages, labels, local = self.head.read(features)
        return Reading(stages, labels, local, *self.reader.probabilities(features))

    def prepare(self, text: str, normalized: Normalized | None = None) -> tuple[Normalized, MessageReading]:
        """One message's normalised text (`normalized`, when the caller has it) and encoder reading: what `step`
        takes as `prepared`, so that a caller who scores it again on a newer state reads it only once."""
        norm = normalize(text) if normalized is None else normalized
        (encoded,) = self.reader.read([norm.text])
        return norm, encoded

    # -- the fold -----------------------------------------------------------------------------------------------
    def step(
        self,
        state: ConversationState,
        message: Message,
        evidence_cap: int | None = MAX_EVIDENCE,
        prepared: tuple[Normalized, MessageReading] | None = None,
    ) -> tuple[ConversationState, MessageVerdict]:
        """Read one more message (validated by the caller) and update the state in place (`prepared`: its
        normalised text and encoder reading, when the caller read several messages in one batch)."""
        index = state.count
        if message.ts is not None:
            if state.last_ts is not None and message.ts < state.last_ts:
                state.warnings = [*state.warnings, out_of_order(index, message.ts, state.last_ts)][-5:]
            state.last_ts = message.ts if state.last_ts is None else max(state.last_ts, message.ts)
        norm, encoded = prepared or self.prepare(message.text)
        reading = self.read(self.reader.next_row(state, message.sender, encoded))
        funnel_row = update_funnel(state.funnel, reading)
        score = self.head.conversation_score(funnel_row)
        for label, p in zip(LABELS, reading.labels, strict=True):
            state.label_max[label] = max(state.label_max.get(label, 0.0), float(p))
        state.score = max(state.score, score)
        if state.trigger_index is None and self.decide(round(state.score, SCORE_DECIMALS)) != "pass":
            state.trigger_index = index
        stage_i = int(np.argmax(reading.stages))
        verdict = MessageVerdict(
            index=index,
            stage=STAGES[stage_i],
            stage_score=round(float(reading.stages[stage_i]), 4),
            fraud_score=round(reading.local, 4),
            conversation_score=round(state.score, SCORE_DECIMALS),
            id=message.id,
        )
        # every message's evidence is kept (a stream: the most recent `evidence_cap`); a flagged verdict shows it
        found = [MessageEvidence(index, e).to_dict() for e in extract(norm)]
        state.evidence = [*state.evidence, *found]
        if evidence_cap is not None:
            state.evidence = state.evidence[-evidence_cap:]
        state.count += 1
        # the context lives in `context` (readings); the window only answers with the recent messages
        state.window = [*state.window, [index, message.id, message.sender, message.text]][-STREAM_WINDOW:]
        state.recent = [*state.recent, verdict.to_dict()][-STREAM_WINDOW:]
        return state, verdict

    def verdict(
        self,
        state: ConversationState,
        messages: list[MessageVerdict] | None = None,
        warnings: list[str] | None = None,
        timings: dict[str, float] | None = None,
    ) -> ConversationVerdict:
        """The conversation's verdict from its state (`messages`: every message's, else the recent window's)."""
        fraud_score = round(state.score, SCORE_DECIMALS)
        decision = self.decide(fraud_score)
        scores = {label: round(state.label_max.get(label, 0.0), 4) for label in LABELS}
        labels = (
            []
            if decision == "pass"
            else [label for label in LABELS if scores[label] >= self.head.thresholds.get(label, 0.5)]
        )
        if messages is None:
            messages = [MessageVerdict(**m) for m in state.recent]
        evidence = (
            [MessageEvidence(e["message_index"], _evidence_from_dict(e)) for e in state.evidence]
            if decision != "pass"
            else []
        )
        return ConversationVerdict(
            fraud_score=fraud_score,
            scores=scores,
            labels=labels,
            decision=decision,
            evidence=evidence,
            messages=messages,
            trigger_index=state.trigger_index,
            model_version=self.model_version,
            warnings=list(warnings if warnings is not None else state.warnings),
            timings=timings or {},
            message_count=state.count,
        )

    def transcript(self, state: ConversationState) -> dict[str, Any]:
        """The recent messages with their stages, for a moderator: {"messages": [...], "trigger_index"}."""
        read = {m["index"]: m for m in state.recent}
        messages = [
            {
                "index": i,
                "id": mid,
                "sender": sender,
                "text": text,
                **{k: read[i][k] for k in ("stage", "stage_score", "fraud_score") if i in read},
            }
            for i, mid, sender, text, *_ in state.window  # *_: states stored before kept the normalised text
        ]
        return {"messages": messages, "trigger_index": state.trigger_index, "message_count": state.count}

    def classify(self, messages: Sequence[Message]) -> ConversationVerdict:
        """A whole conversation (InputError: empty, over MAX_MESSAGES, a bad text, a repeated id)."""
        warnings = validate_messages(messages, self.text_check)
        t0 = time.perf_counter()
        state, read = ConversationState(), []
        norms = [normalize(m.text) for m in messages]
        encoded = self.reader.read([n.text for n in norms])
        for m, prepared in zip(messages, zip(norms, encoded, strict=True), strict=True):
            state, verdict = self.step(state, m, evidence_cap=None, prepared=prepared)
            read.append(verdict)
        ms = (time.perf_counter() - t0) * 1000
        return self.verdict(
            state,
            messages=read,
            warnings=warnings,
            timings={"classify_ms": round(ms, 3), "per_message_ms": round(ms / len(messages), 3)},
        )


def update_funnel(funnel: dict[str, float], reading: Reading) -> np.ndarray:
    """Fold one reading into the running maxima (in place) and return the funnel's input row."""

    def bump(name: str, value: float) -> float:
        funnel[name] = max(funnel.get(name, 0.0), float(value))
        return funnel[name]

    for stage, p in zip(STAGES, reading.stages, strict=True):
        if stage != "none":
            bump(f"{stage}_max", p)
    bump("local_max", reading.local)
    bump("message_fraud_max", reading.message_fraud)
    bump("context_fraud_max", reading.context_fraud)
    row = {
        **funnel,
        "local": reading.local,
        "context_fraud": reading.context_fraud,
        "stages_seen": sum(funnel.get(f"{s}_max", 0.0) >= 0.5 for s in FUNNEL_STAGES) / 3.0,
    }
    return np.array([row[name] for name in FUNNEL_FEATURES], dtype=np.float64)


def _evidence_from_dict(d: dict[str, Any]) -> Evidence:
    return Evidence(kind=d["kind"], value=d["value"], start=d["start"], end=d["end"], text=d["text"])


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()

"""Inference: everything a platform needs at request time. Never imports torch or transformers."""

from .conversation import ConversationScorer, ConversationState, Message
from .detector import Detector, validate_text
from .errors import (
    Busy,
    Conflict,
    DatabaseError,
    DurationExceeded,
    FanzhaError,
    InputError,
    LimitExceeded,
    MissingExtra,
    ModelError,
    NotFound,
    OcrError,
    SettingsError,
    SetupError,
    UnsupportedMedia,
)
from .evidence import extract
from .labels import LABELS, DecisionThresholds
from .normalize import Normalized, normalize
from .settings import Limits, Settings, settings
from .text import TextClassifier
from .verdict import (
    ConversationVerdict,
    Evidence,
    Location,
    MediaInfo,
    MessageVerdict,
    TimelineEntry,
    Trigger,
    Verdict,
)

__all__ = [
    "LABELS",
    "Busy",
    "Conflict",
    "ConversationScorer",
    "ConversationState",
    "ConversationVerdict",
    "DatabaseError",
    "DecisionThresholds",
    "Detector",
    "DurationExceeded",
    "Evidence",
    "FanzhaError",
    "InputError",
    "LimitExceeded",
    "Limits",
    "Location",
    "MediaInfo",
    "Message",
    "MessageVerdict",
    "MissingExtra",
    "ModelError",
    "NotFound",
    "Normalized",
    "OcrError",
    "Settings",
    "SettingsError",
    "SetupError",
    "TextClassifier",
    "TimelineEntry",
    "Trigger",
    "UnsupportedMedia",
    "Verdict",
    "extract",
    "normalize",
    "settings",
    "validate_text",
]

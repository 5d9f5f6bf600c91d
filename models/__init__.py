"""Inference: everything a platform needs at request time. Never imports torch or transformers."""

from .detector import Detector, Verdict, validate_text
from .errors import DurationExceeded, InputError, LimitExceeded, UnsupportedMedia
from .evidence import Evidence, extract
from .labels import LABELS, DecisionThresholds
from .normalize import Normalized, normalize
from .text import ModelError, TextClassifier

__all__ = [
    "LABELS",
    "DecisionThresholds",
    "Detector",
    "DurationExceeded",
    "Evidence",
    "InputError",
    "LimitExceeded",
    "ModelError",
    "Normalized",
    "TextClassifier",
    "UnsupportedMedia",
    "Verdict",
    "extract",
    "normalize",
    "validate_text",
]

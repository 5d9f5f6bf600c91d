"""Account and group early warning, split by concern: handles, rules, ingest, queries; RiskState ties them."""

from .handles import HANDLE_KINDS, canonical_handle, handle_key
from .ingest import ENTITY_KINDS, Alert, ScoredItem
from .queries import UnknownEntity
from .rules import HOUR, RULES, RiskRules
from .state import RiskState

__all__ = [
    "ENTITY_KINDS",
    "HANDLE_KINDS",
    "HOUR",
    "RULES",
    "Alert",
    "RiskRules",
    "RiskState",
    "ScoredItem",
    "UnknownEntity",
    "canonical_handle",
    "handle_key",
]

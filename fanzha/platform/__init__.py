"""What a platform keeps, apart from the HTTP layer: the database and its migrations, account/group risk state
(rules, handles, ingest, queries), campaign clusters and alerts, the alert webhook, and fraud reports.

`Platform` (facade.py) is the one door: the service's endpoints and the command line both call it.
"""

from .conversations import Contended
from .database import Database
from .facade import Intake, ItemRef, Platform, Scored, ScoredConversation, open_tracker
from .reports import InvalidTransition, NewReport, ReportBook, UnknownReport
from .risk import Alert, RiskRules, RiskState, ScoredItem, UnknownEntity
from .webhook import AlertWebhook

__all__ = [
    "Alert",
    "AlertWebhook",
    "Contended",
    "Database",
    "Intake",
    "InvalidTransition",
    "ItemRef",
    "NewReport",
    "Platform",
    "ReportBook",
    "RiskRules",
    "RiskState",
    "Scored",
    "ScoredConversation",
    "ScoredItem",
    "UnknownEntity",
    "UnknownReport",
    "open_tracker",
]

"""Loaders for external Chinese fraud/SMS corpora, used to MEASURE the model on text nobody here wrote.

Never copy their rows into this repository or ship a model trained on them (unstated / research licences).
The directory comes from --corpora_dir, else $FANZHA_CORPORA, else ../shared/corpora beside the repository.

- telecom_fraud_texts/label0{0..4}-last.csv (`content,label`): 00 normal messages, 01 police/government
  impersonation, 02 loans/credit cards, 03 fake customer service, 04 boss/acquaintance impersonation.
  (Li, Zhang, Jiang, Applied Sciences 14(24):11628, 2024.)
- sms_spam_msglog/msgpass.log.seg and msgspam.log.seg: real SMS, word-segmented, digits masked as `x`
  (tensorlayer/text-antispam). Spam is advertising, not necessarily fraud.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from fanzha.models.settings import settings

TELECOM_CLASSES = {
    "label00": "normal",
    "label01": "impersonating_police_government",
    "label02": "loan_credit_card",
    "label03": "fake_customer_service",
    "label04": "impersonating_boss_acquaintance",
}
_SEGMENT_SPACE = re.compile(r"(?<=[^\x00-\x7f]) (?=[^\x00-\x7f])")


def corpora_dir(path: str | Path | None = None) -> Path | None:
    """The external corpora directory, or None when it is not present ("none" turns them off)."""
    if path is not None and str(path).lower() == "none":
        return None
    candidates = [path, settings().corpora, Path(__file__).resolve().parents[1].parent / "shared" / "corpora"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    return None


def load_telecom(root: Path) -> dict[str, list[str]]:
    """Texts per class name; classes whose file is missing are left out."""
    out = {}
    for stem, name in TELECOM_CLASSES.items():
        path = root / "telecom_fraud_texts" / f"{stem}-last.csv"
        if path.exists():
            with path.open(encoding="utf-8", newline="") as f:
                out[name] = [
                    row["content"].strip() for row in csv.DictReader(f) if row.get("content", "").strip()
                ]
    return out


def load_msglog(root: Path) -> dict[str, list[str]]:
    """`pass` and `spam` SMS with the word-segmentation spaces between Chinese words removed."""
    out = {}
    for name in ("pass", "spam"):
        path = root / "sms_spam_msglog" / f"msg{name}.log.seg"
        if path.exists():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            out[name] = [_SEGMENT_SPACE.sub("", line.strip()) for line in lines if line.strip()]
    return out

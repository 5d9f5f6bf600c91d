"""Draw a verdict on its picture: what a moderator looks at instead of reading JSON.

Flagged boxes (OCR lines and QR codes that carry evidence) are red, other text boxes grey, and a banner
states the decision, the score and the labels.
"""

from __future__ import annotations

import cv2
import numpy as np

_RED, _GREY, _GREEN, _ORANGE = (40, 40, 220), (150, 150, 150), (60, 170, 60), (0, 140, 255)  # BGR


def draw_verdict(rgb: np.ndarray, verdict: dict) -> np.ndarray:
    """A BGR copy of the picture with the verdict's boxes and a banner (encode it with cv2.imencode)."""
    canvas = np.ascontiguousarray(rgb[..., ::-1]).copy()
    flagged = {
        (loc["source"], loc["index"]) for e in verdict.get("evidence", []) for loc in e.get("locations", [])
    }
    decision = verdict.get("decision", "pass")
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    for source, items in (("ocr", verdict.get("ocr") or []), ("qr", verdict.get("qr") or [])):
        for i, item in enumerate(items):
            hit = (source, i) in flagged
            colour = _RED if hit and decision != "pass" else _ORANGE if hit else _GREY
            points = np.array(item["box"], dtype=np.int32).reshape(-1, 1, 2)
            cv2.polylines(canvas, [points], isClosed=True, color=colour, thickness=thickness if hit else 1)
    banner_colour = {"block": _RED, "review": _ORANGE}.get(decision, _GREEN)
    label = f"{decision.upper()}  fraud {verdict.get('fraud_score', 0):.2f}  {' '.join(verdict.get('labels', []))}"
    scale = max(0.6, canvas.shape[1] / 1400)
    (w, h), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(canvas, (0, 0), (min(canvas.shape[1], w + 20), h + base + 16), banner_colour, thickness=-1)
    cv2.putText(canvas, label, (10, h + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return canvas

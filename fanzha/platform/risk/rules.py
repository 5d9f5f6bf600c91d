"""The early-warning rules: thresholds, the risk half-life, and how a state reads as a level and reasons.

    risk(t) = Σ fraud_score(i) · 2^(−(t − t_i) / half-life)      over flagged items i

so risk ≈ "how many sure lures lately": 3.0 is three certain ones just now, or six a half-life ago.

| rule | fires when | default (setting) |
|---|---|---|
| `flagged_in_window` | an account/group reaches N flagged items within the window | 5 in 24 h (FANZHA_ALERT_FLAGGED, FANZHA_ALERT_WINDOW_HOURS) |
| `risk` | its decayed risk reaches R | 3.0, half-life 24 h (FANZHA_ALERT_RISK, FANZHA_RISK_HALF_LIFE_HOURS) |
| `cluster_size` | a campaign cluster reaches C accounts | 5 (FANZHA_ALERT_CLUSTER_ACCOUNTS) |
| `report_confirmed` | a moderator confirms a report against an account/group | always |
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fanzha.models.errors import SettingsError
from fanzha.models.settings import Settings, settings

from .handles import ignored_handles

HOUR = 3600.0
RULES = ("flagged_in_window", "risk", "cluster_size", "report_confirmed")
LEVELS = ("low", "elevated", "high")


@dataclass(frozen=True)
class RiskRules:
    """Thresholds of the early-warning rules and the risk half-life; `from_settings` takes the FANZHA_* values."""

    half_life_s: float = 24 * HOUR
    window_s: float = 24 * HOUR
    flagged_in_window: int = 5
    risk: float = 3.0
    cluster_accounts: int = 5
    retention_s: float = 90 * 24 * HOUR  # flagged-item records older than this are pruned
    ignore_handles: frozenset[str] = frozenset()  # "kind:value" handles that never link accounts

    def __post_init__(self) -> None:
        if min(self.half_life_s, self.window_s, self.risk, self.retention_s) <= 0:
            raise SettingsError(
                f"risk half-life, window, risk threshold and retention must be positive: {self}"
            )
        if self.flagged_in_window < 1 or self.cluster_accounts < 2:
            raise SettingsError(
                "the flagged-items threshold must be ≥ 1 and the cluster threshold ≥ 2 accounts"
            )

    @classmethod
    def from_settings(cls, s: Settings | None = None) -> RiskRules:
        s = s or settings()
        return cls(
            half_life_s=s.risk_half_life_hours * HOUR,
            window_s=s.alert_window_hours * HOUR,
            flagged_in_window=s.alert_flagged,
            risk=s.alert_risk,
            cluster_accounts=s.alert_cluster_accounts,
            retention_s=s.risk_retention_days * 24 * HOUR,
            ignore_handles=ignored_handles(s.risk_ignore_handles),
        )

    def decay(self, value: float, seconds: float) -> float:
        return value * 0.5 ** (seconds / self.half_life_s) if seconds > 0 else value

    def level(
        self, in_window: int, risk: float, flagged: int, cluster: dict | None, reports: dict[str, int]
    ) -> str:
        """high: a rule's threshold is met now (or a report was confirmed); elevated: anything flagged or reported."""
        if (
            in_window >= self.flagged_in_window
            or risk >= self.risk
            or reports.get("confirmed", 0) > 0
            or (cluster is not None and cluster["accounts"] >= self.cluster_accounts)
        ):
            return "high"
        return "elevated" if flagged or reports else "low"

    def reasons(
        self,
        in_window: int,
        risk: float,
        labels: Counter,
        handles: list[dict],
        cluster: dict | None,
        reports: dict[str, int],
    ) -> list[str]:
        """Why an account or group stands where it does, one sentence per rule that has something to say."""
        reasons = []
        if in_window:
            reasons.append(
                f"{in_window} flagged item{'s' * (in_window != 1)} in the last {self.window_s / HOUR:g} h "
                f"(alert at {self.flagged_in_window})"
            )
        if risk >= 0.01:
            reasons.append(
                f"risk {risk:.2f}: decayed sum of flagged fraud scores, half-life {self.half_life_s / HOUR:g} h "
                f"(alert at {self.risk:g})"
            )
        if labels:
            reasons.append("labels: " + ", ".join(f"{label} ×{n}" for label, n in labels.most_common()))
        pushed = [h for h in handles if h["flagged"]]
        if pushed:
            reasons.append(
                "handles pushed in flagged items: "
                + ", ".join(
                    f"{h['kind']}:{h['value']}"
                    + (f" (pushed by {h['accounts']} accounts)" if h["accounts"] > 1 else "")
                    for h in pushed[:5]
                )
            )
        if cluster and cluster["accounts"] > 1:
            reasons.append(
                f"campaign cluster #{cluster['id']}: {cluster['accounts']} accounts linked by "
                f"{cluster['handle_count']} shared handle{'s' * (cluster['handle_count'] != 1)} (alert at {self.cluster_accounts})"
            )
        if reports:
            reasons.append(
                f"{sum(reports.values())} fraud report(s): "
                + ", ".join(f"{n} {s}" for s, n in sorted(reports.items()))
            )
        return reasons

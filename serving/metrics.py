"""Our Prometheus counters, served at /metrics next to BentoML's own.

They are created on first use, not at import: BentoML sets PROMETHEUS_MULTIPROC_DIR in each worker after
importing the service module, and a metric made before that would never reach /metrics.
"""

from __future__ import annotations

from functools import lru_cache
from types import SimpleNamespace

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@lru_cache(maxsize=1)
def metrics() -> SimpleNamespace:
    import prometheus_client as prom

    return SimpleNamespace(
        decisions=prom.Counter(
            "fanzha_decisions_total", "Verdicts served, by endpoint and decision", ["endpoint", "decision"]
        ),
        labels=prom.Counter("fanzha_labels_total", "Scam labels on flagged verdicts", ["endpoint", "label"]),
        errors=prom.Counter(
            "fanzha_request_errors_total",
            "Requests answered with an error, by endpoint and status",
            ["endpoint", "status"],
        ),
        latency=prom.Histogram(
            "fanzha_request_seconds", "Request latency by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS
        ),
    )


def count_verdict(endpoint: str, decision: str, labels: list[str]) -> None:
    m = metrics()
    m.decisions.labels(endpoint, decision).inc()
    for label in labels:
        m.labels.labels(endpoint, label).inc()

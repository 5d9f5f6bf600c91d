"""What the benchmarks share: test-split messages and the in-process batched throughput they compare to."""

from __future__ import annotations

import time


def messages(n: int) -> list[str]:
    """n messages from the test split (cycled): the same texts for every benchmark."""
    from fanzha.datasets.corpus import load_corpus

    pool = [r["text"] for r in load_corpus(splits=["test"])]
    return (pool * (n // len(pool) + 1))[:n]


def batched_throughput(texts: list[str], threads: int, batch_size: int) -> float:
    """Texts per second through Detector.classify_texts in batches: the bare classifier, in this process."""
    from fanzha.models import Detector

    detector = Detector.load(threads=threads)
    detector.classify_texts(texts[:batch_size])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        detector.classify_texts(texts[i : i + batch_size])
    return len(texts) / (time.perf_counter() - t0)

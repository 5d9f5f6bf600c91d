"""Archive scoring (`fanzha score`, `fanzha summarize`), apart from the HTTP layer.

    formats.py   input kinds by suffix, CSV record boundaries, output format; ArchiveError
    plan.py      inputs → chunks (a run of lines, CSV records, a Parquet row group, a batch of media files)
    readers.py   chunks (or a JSONL stream) → Records; the reader `fanzha classify --input` uses too
    scoring.py   Records → Verdicts through the Detector, and the flat output row
    parts.py     one part file per chunk, written atomically; the job's identity and resuming
    merge.py     parts → the output file; reading an output back in column batches
    summary.py   counts of a finished output; summary_report.py the Markdown/HTML summary
    local.py     the local engine (and the per-chunk work both engines do); ray_engine.py the Ray Data engine
    tracking.py  the Tracker protocol: how scored rows reach a platform's risk state without importing it
    job.py       score_archive: plan, resume, score, merge, summarise

Nothing here imports the HTTP layer (fanzha.serving) or the platform (fanzha.platform): tracking is passed in.
"""

"""One settings object: documented defaults, FANZHA_* parsed once (again only when one changes), gate body
limits derived from the media limits, and the error tree every door maps."""

import pytest

from fanzha.models import errors
from fanzha.models.settings import MB, Settings, settings


def test_documented_defaults() -> None:
    s = Settings.from_env({})
    assert (s.limits.max_text_chars, s.limits.max_image_bytes, s.limits.max_image_pixels) == (
        200_000,
        20 * MB,
        40_000_000,
    )
    assert (s.limits.max_video_bytes, s.limits.max_video_seconds, s.limits.max_video_frames) == (
        200 * MB,
        600.0,
        36_000,
    )
    assert (s.workers, s.max_sync_video_seconds, s.max_latency_ms) == (2, 120.0, 2000)
    assert (s.max_text_items, s.max_batch_items, s.max_archive_items) == (256, 64, 10_000)
    assert (s.alert_flagged, s.alert_risk, s.alert_cluster_accounts, s.risk_half_life_hours) == (
        5,
        3.0,
        5,
        24.0,
    )
    assert s.api_keys == () and s.database_url is None and s.ocr_engine == "rapidocr"
    # the gate's limits as they were when they were hard-coded: 8 / 21 / 201 / 64 / 29 MB
    assert s.body_limits() == {
        "text": 8 * MB,
        "image": 21 * MB,
        "video": 201 * MB,
        "batch": 64 * MB,
        "report": 29 * MB,
    }


def test_body_limits_follow_the_media_limits() -> None:
    s = Settings.from_env({"FANZHA_MAX_IMAGE_BYTES": str(60 * MB), "FANZHA_MAX_VIDEO_BYTES": str(500 * MB)})
    limits = s.body_limits()
    assert limits["image"] == 61 * MB and limits["video"] == 501 * MB
    assert (
        limits["report"] >= 60 * MB * 4 // 3 and limits["batch"] >= limits["report"]
    )  # a base64 image still fits


def test_threads_are_worked_out_in_one_place(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert Settings.from_env({}).threads_per_process() == 8
    assert Settings.from_env({}).threads_per_process(workers=2) == 4
    assert Settings.from_env({"FANZHA_THREADS": "3"}).threads_per_process(workers=2) == 3


def test_lists_blanks_and_bad_values() -> None:
    s = Settings.from_env(
        {"FANZHA_API_KEYS": " a, ,b ", "FANZHA_DATABASE_URL": "  ", "FANZHA_ALERT_WEBHOOK": ""}
    )
    assert s.api_keys == ("a", "b") and s.database_url is None and s.alert_webhook is None
    with pytest.raises(errors.SettingsError, match="FANZHA_MAX_TEXT_CHARS='lots' is not an integer"):
        Settings.from_env({"FANZHA_MAX_TEXT_CHARS": "lots"})


def test_parsed_once_and_again_when_a_variable_changes(monkeypatch) -> None:
    monkeypatch.delenv("FANZHA_ALERT_FLAGGED", raising=False)
    first = settings()
    assert settings() is first  # nothing changed: the same object
    monkeypatch.setenv("FANZHA_ALERT_FLAGGED", "9")
    assert settings() is not first and settings().alert_flagged == 9


def test_one_error_tree() -> None:
    for kind in (errors.InputError, errors.NotFound, errors.Conflict, errors.SetupError):
        assert issubclass(kind, errors.FanzhaError)
    assert issubclass(errors.LimitExceeded, errors.InputError) and issubclass(
        errors.UnsupportedMedia, errors.InputError
    )
    assert issubclass(errors.DurationExceeded, errors.LimitExceeded)
    for setup in (
        errors.ModelError,
        errors.OcrError,
        errors.DatabaseError,
        errors.MissingExtra,
        errors.SettingsError,
    ):
        assert issubclass(setup, errors.SetupError)
    # the builtin bases the classes had before the tree: older `except ValueError/LookupError` still hold
    assert issubclass(errors.InputError, ValueError) and issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.SettingsError, ValueError)

"""The service in-process through its ASGI app: answers, ids, model tag, and a 4xx for every kind of bad input."""

import base64
import json

import pytest

from ..conftest import BENIGN, MEDIA, SCAM


def upload(name: str, data: bytes | None = None, mime: str = "application/octet-stream") -> dict:
    return {"file": (name, data if data is not None else (MEDIA / name).read_bytes(), mime)}


def test_classify_text_answers_in_order_with_ids_and_model_tag(client, model_tag) -> None:
    items = [
        {"text": SCAM, "id": "m1", "account_id": "u9", "group_id": "g1", "source": "group_chat"},
        {"text": BENIGN, "id": "m2"},
    ]
    r = client.post("/classify_text", json={"items": items})
    assert r.status_code == 200 and r.headers["x-request-id"]
    scam, benign = r.json()
    assert (scam["id"], scam["account_id"], scam["group_id"], scam["source"]) == (
        "m1",
        "u9",
        "g1",
        "group_chat",
    )
    assert scam["decision"] != "pass" and benign["decision"] == "pass" and benign["id"] == "m2"
    assert scam["model_tag"] == model_tag and any(e["kind"] == "qq_group" for e in scam["evidence"])


@pytest.mark.parametrize(
    "body,where",
    [
        ({"items": []}, "items: List should have at least 1 item"),
        ({"items": [{"text": "   "}]}, "items.0.text: Value error, text is empty"),
        ({"items": [{"text": "🎁🎁🎁"}]}, "no readable characters"),
        ({"items": [{"text": 42}]}, "items.0.text: Input should be a valid string"),
        ({"items": "免费领皮肤"}, "items: Input should be a valid array"),
        ({"items": [{"text": "你好", "colour": "red"}]}, "items.0.colour: Extra inputs are not permitted"),
        ({}, "items: Field required"),
        ({"items": [{"text": "好"}] * 257}, "at most 256 items"),
        ({"items": [{"text": "长" * 200_001}]}, "the limit is 200,000"),
    ],
)
def test_bad_text_requests_are_400_naming_the_field(client, body, where) -> None:
    r = client.post("/classify_text", json=body)
    assert r.status_code == 400 and where in r.json()["error"], r.text
    assert r.json()["request_id"] == r.headers["x-request-id"]


def test_malformed_json_is_400(client) -> None:
    r = client.post("/classify_text", content=b'{"items": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "Invalid JSON" in r.json()["error"]


def test_oversized_bodies_are_413_before_reading(client) -> None:
    r = client.post(
        "/classify_text", content=b"x" * (8 * 2**20 + 1), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and "limit for /classify_text" in r.json()["error"]


def test_classify_image_with_boxes(client) -> None:
    r = client.post("/classify_image", files=upload("qr.png", mime="image/png"), data={"id": "img-7"})
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["id"] == "img-7" and verdict["decision"] != "pass" and verdict["media"]["kind"] == "image"
    assert verdict["qr"] and all(len(line["box"]) == 4 for line in verdict["ocr"])


@pytest.mark.parametrize(
    "path,name,data,status,message",
    [
        ("/classify_image", "note.txt", "不是图片".encode(), 415, "unsupported media"),
        ("/classify_image", "clip.mp4", None, 415, "takes an image, the upload is a video"),
        ("/classify_video", "poster.png", None, 415, "takes a video, the upload is an image"),
        (
            "/classify_image",
            "cut.png",
            (MEDIA / "poster.png").read_bytes()[:4000],
            400,
            "corrupt or truncated",
        ),
        (
            "/classify_video",
            "cut.mp4",
            (MEDIA / "static.mp4").read_bytes()[:5000],
            400,
            "not a readable video",
        ),
        ("/classify_image", "empty.png", b"", 415, "unsupported media"),
    ],
)
def test_bad_uploads_are_4xx(client, path, name, data, status, message) -> None:
    if data is None:
        data = (MEDIA / ("subtitles.mp4" if name.endswith(".mp4") else name)).read_bytes()
    r = client.post(path, files=upload(name, data))
    assert r.status_code == status and message in r.json()["error"], r.text


def test_classify_video_timeline(client) -> None:
    r = client.post("/classify_video", files=upload("flash_scam.mp4", mime="video/mp4"))
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["decision"] != "pass" and verdict["media"]["trigger"]["by"] == "segment"
    assert [s["triggered"] for s in verdict["timeline"]] == [False, True, False]


def test_classify_batch_mixes_kinds_and_keeps_going_past_a_bad_item(client) -> None:
    b64 = lambda name: base64.b64encode((MEDIA / name).read_bytes()).decode()  # noqa: E731
    items = [
        {"type": "text", "text": SCAM, "id": "t"},
        {"type": "image", "data": b64("poster.png"), "id": "i"},
        {"type": "image", "data": base64.b64encode(b"not an image").decode(), "id": "bad"},
        {"type": "video", "data": b64("static.mp4"), "id": "v"},
        {"type": "image", "data": "%%%not base64%%%", "id": "b64"},
    ]
    r = client.post("/classify_batch", json={"items": items})
    assert r.status_code == 200, r.text
    results = {x["id"]: x for x in r.json()}
    assert results["t"]["verdict"]["decision"] != "pass" and results["i"]["verdict"]["decision"] != "pass"
    assert results["v"]["verdict"]["decision"] == "pass"
    assert "unsupported media" in results["bad"]["error"] and "base64" in results["b64"]["error"]
    assert [x["id"] for x in r.json()] == ["t", "i", "bad", "v", "b64"]


def test_batch_items_must_carry_the_right_payload(client) -> None:
    r = client.post("/classify_batch", json={"items": [{"type": "image", "text": "hello"}]})
    assert r.status_code == 400 and "base64 `data`" in r.json()["error"]


def test_health_probes_and_openapi(client) -> None:
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    spec = client.get("/docs.json").json()
    assert {
        "/classify_text",
        "/classify_image",
        "/classify_video",
        "/classify_batch",
        "/scan_video/submit",
        "/classify_archive/submit",
    } <= set(spec["paths"])


def test_request_id_is_echoed(client) -> None:
    r = client.post(
        "/classify_text", json={"items": [{"text": BENIGN}]}, headers={"X-Request-ID": "trace-123"}
    )
    assert r.headers["x-request-id"] == "trace-123"
    assert json.loads(r.text)[0]["decision"] == "pass"


def test_streamed_oversized_bodies_are_413_not_500(client) -> None:
    def chunks(total: int):
        for _ in range(total // 2**20):
            yield b"x" * 2**20

    r = client.post("/classify_text", content=chunks(9 * 2**20), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit for /classify_text" in r.json()["error"], r.text


def test_plain_task_routes_are_refused(client) -> None:
    r = client.post(
        "/scan_video", files={"file": ("a.mp4", (MEDIA / "static.mp4").read_bytes(), "video/mp4")}
    )
    assert r.status_code == 404 and "/scan_video/submit" in r.json()["error"]

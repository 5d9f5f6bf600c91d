"""BentoML's own Python clients against a real `bentoml serve` on loopback, open (no API keys): every endpoint
through SyncHTTPClient and AsyncHTTPClient without `token=`, typed answers, each 2xx answer validated against
the published /docs.json, and README "From Python" run as written."""

import asyncio
import re
import signal

import bentoml
import pytest

from ..conftest import MEDIA, REPO
from .client_walk import ENDPOINTS, SERVER_ENV, walk_async, walk_sync
from .live import Conformance, bentoml_serve


@pytest.fixture(scope="module")
def server(model_tag, tmp_path_factory):
    with bentoml_serve(tmp_path_factory.mktemp("open-server"), **SERVER_ENV) as url:
        yield url


def test_sync_client_calls_every_endpoint(server) -> None:
    conformance = Conformance(server)
    with bentoml.SyncHTTPClient(server) as client:
        conformance.record(client)
        walk_sync(client, client, "sync-open")
    assert {path for _, path in conformance.check()} == ENDPOINTS


def test_async_client_calls_every_endpoint(server) -> None:
    conformance = Conformance(server)

    async def walk() -> None:
        async with bentoml.AsyncHTTPClient(server) as client:
            conformance.record(client)
            await walk_async(client, client, "async-open")

    asyncio.run(walk())
    assert {path for _, path in conformance.check()} == ENDPOINTS


def test_sync_task_submit_is_still_broken_in_bentoml(server) -> None:
    """README "From Python" submits tasks with client.request because SyncHTTPClient's own `submit` fails in
    BentoML 1.4.40 (after the request was sent). When this test fails, BentoML fixed it: update the README."""
    with bentoml.SyncHTTPClient(server) as client, pytest.raises(AttributeError, match="_opened_files"):
        client.classify_archive.submit(
            items=[{"type": "text", "text": "周六班级聚餐AA，每人45元，转给班长就行"}]
        )


def readme_python() -> str:
    """The Python blocks of README "From Python", in order."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From Python", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return "\n".join(re.findall(r"```python\n(.*?)```", section, flags=re.S))


def test_readme_from_python_runs_as_written(server, monkeypatch, capsys) -> None:
    code = readme_python()
    assert (
        "bentoml.SyncHTTPClient" in code
        and "bentoml.AsyncHTTPClient" in code
        and "http://127.0.0.1:3000" in code
    )
    monkeypatch.chdir(REPO)  # the examples upload tests/fixtures/media/… by relative path
    assert (MEDIA / "qr.png").exists()

    def too_long(*_) -> None:
        raise TimeoutError("README example ran over 180 s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(180)
    try:
        exec(
            compile(code.replace("http://127.0.0.1:3000", server), "README.md (From Python)", "exec"),
            {"__name__": "readme"},
        )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    printed = capsys.readouterr().out
    for line in (
        "c1 block ['fake_giveaway', 'fee_demand']",
        "c2 pass []",
        "block ['https://qm.qq.com/cgi-bi'] 扫码进群领皮肤 []",
        "completed block [(5.04, '加QQ群605318274免费领皮肤')]",
        "block received",
        "report_confirmed account u42",
        "block ['click_farming']",
    ):
        assert line in printed, printed

"""BentoML's own Python clients against a real `bentoml serve` with API keys and moderator keys: every endpoint
through SyncHTTPClient and AsyncHTTPClient with `token=`, each 2xx answer validated against /docs.json; without
a key a client cannot even read the endpoints, and a platform key cannot moderate."""

import asyncio

import bentoml
import pytest
from bentoml.exceptions import BentoMLException

from .client_walk import ENDPOINTS, SERVER_ENV, walk_async, walk_sync
from .live import Conformance, bentoml_serve

KEY, MODERATOR_KEY = "platform-key-1", "mod-key-1"


@pytest.fixture(scope="module")
def server(model_tag, tmp_path_factory):
    with bentoml_serve(
        tmp_path_factory.mktemp("keyed-server"),
        FANZHA_API_KEYS=KEY,
        FANZHA_MODERATOR_KEYS=MODERATOR_KEY,
        **SERVER_ENV,
    ) as url:
        yield url


def test_sync_client_with_token_calls_every_endpoint(server) -> None:
    conformance = Conformance(server, headers={"Authorization": f"Bearer {KEY}"})
    with (
        bentoml.SyncHTTPClient(server, token=KEY) as client,
        bentoml.SyncHTTPClient(server, token=MODERATOR_KEY) as moderator,
    ):
        conformance.record(client)
        conformance.record(moderator)
        walk_sync(client, moderator, "sync-keyed")
    assert {path for _, path in conformance.check()} == ENDPOINTS


def test_async_client_with_token_calls_every_endpoint(server) -> None:
    conformance = Conformance(server, headers={"Authorization": f"Bearer {KEY}"})

    async def walk() -> None:
        async with (
            bentoml.AsyncHTTPClient(server, token=KEY) as client,
            bentoml.AsyncHTTPClient(server, token=MODERATOR_KEY) as moderator,
        ):
            conformance.record(client)
            conformance.record(moderator)
            await walk_async(client, moderator, "async-keyed")

    asyncio.run(walk())
    assert {path for _, path in conformance.check()} == ENDPOINTS


def test_a_moderator_key_opens_the_platform_endpoints_too(server) -> None:
    with bentoml.SyncHTTPClient(server, token=MODERATOR_KEY) as moderator:
        assert (
            moderator.classify_text(items=[{"text": "周六班级聚餐AA，每人45元，转给班长就行"}])[0]["decision"]
            == "pass"
        )


def test_without_a_key_the_clients_are_refused(server, monkeypatch) -> None:
    monkeypatch.delenv("BENTO_CLOUD_API_KEY", raising=False)  # the clients' default token
    with pytest.raises(
        BentoMLException, match="Failed to fetch schema"
    ):  # /schema.json is behind the key too
        bentoml.SyncHTTPClient(server)

    async def open_async() -> None:
        async with bentoml.AsyncHTTPClient(server):
            pass

    with pytest.raises(BentoMLException, match="Failed to fetch schema"):
        asyncio.run(open_async())
    with pytest.raises(BentoMLException, match="Failed to fetch schema"):
        bentoml.SyncHTTPClient(server, token="wrong-key")


def test_a_platform_key_cannot_moderate(server) -> None:
    with bentoml.SyncHTTPClient(server, token=KEY) as client:
        with pytest.raises(BentoMLException, match="is for moderators") as refused:
            client.reports(status="received")
    assert refused.value.error_code == 403

"""A real `bentoml serve` on loopback for one test module, and a recorder that checks every answer a client got
against the OpenAPI document the server publishes (schemathesis' response-schema conformance)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from fanzha.serving.launch import local_server


@contextmanager
def bentoml_serve(workdir: Path, **env: str) -> Iterator[str]:
    """`bentoml serve` on 127.0.0.1 with one worker, a private database and `env`; yields its URL once /readyz
    answers, and stops the whole process group afterwards."""
    defaults = {
        "FANZHA_WORKERS": "1",
        "FANZHA_THREADS": "1",
        "FANZHA_DATABASE_URL": f"sqlite:///{workdir / 'fanzha.db'}",
    }
    with local_server({**defaults, **env}, log=workdir / "serve.log") as server:
        yield server.url


class Conformance:
    """Records the responses of BentoML clients (httpx event hooks on their sessions) and validates every 2xx
    answer of an endpoint against the server's /docs.json with schemathesis."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        import schemathesis

        doc = httpx.get(url + "/docs.json", headers=headers or {}, timeout=30).raise_for_status().json()
        self.schema = schemathesis.openapi.from_dict(doc)
        self.endpoints = {
            (m.upper(), path)
            for path, item in doc["paths"].items()
            for m, op in item.items()
            if str(op.get("operationId", "")).startswith("Fanzha__")
        }
        self.responses: list[httpx.Response] = []

    def record(self, client) -> None:
        """Attach to a bentoml.SyncHTTPClient or AsyncHTTPClient."""
        session = client.client
        if isinstance(session, httpx.AsyncClient):

            async def hook(response: httpx.Response) -> None:
                await response.aread()
                self.responses.append(response)
        else:

            def hook(response: httpx.Response) -> None:
                response.read()
                self.responses.append(response)

        session.event_hooks = {**session.event_hooks, "response": [*session.event_hooks["response"], hook]}

    def check(self) -> set[tuple[str, str]]:
        """Validate every recorded 2xx answer of an endpoint; the (method, path) pairs checked."""
        import requests
        import schemathesis

        checked = set()
        for response in self.responses:
            key = (response.request.method, response.request.url.path)
            if not response.is_success or key not in self.endpoints:
                continue
            # the request as sent, less its body (BentoML streams JSON bodies from a generator: read once)
            request = requests.Request(
                key[0], str(response.request.url), headers=dict(response.request.headers)
            ).prepare()
            answer = schemathesis.Response(
                status_code=response.status_code,
                headers={k: [v] for k, v in response.headers.items()},
                content=response.content,
                request=request,
                elapsed=response.elapsed.total_seconds(),
                verify=True,
                message=response.reason_phrase,
                encoding=response.encoding,
            )
            self.schema[key[1]][key[0]].validate_response(answer)  # raises with the violations
            checked.add(key)
        return checked

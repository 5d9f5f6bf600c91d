"""The published contract: the OpenAPI document at /docs.json, and the endpoint schemas BentoML's own clients
read from /schema.json. BentoML 1.4.40 generates both from the endpoints' pydantic models and gets these wrong,
which `publish()` corrects for this service:

- pydantic writes `X | None` as `anyOf: [X, {"type": "null"}]`. BentoML publishes OpenAPI 3.0.2, which has no
  null type (openapi-spec-validator refuses the document), and where BentoML flattens a schema it keeps the
  first branch and drops the null: a top-level `"id": null` broke the published schema, and BentoML's client,
  reading `array | null` as `array`, failed on a null list. Here `X | None` is published the OpenAPI 3.0 way,
  X with `nullable: true` (a reference as `allOf: [$ref]` with `nullable: true`); lists are never null
  (schemas.Body). In the document, pydantic's `examples` becomes 3.0's `example`, and BentoML's `type: file`
  a binary string.
- The task endpoints' status schema names statuses the task store never sends (success, failure, cancelled
  for completed, failed, canceled) and requires `created_at` and `executed_at`, which /submit does not send;
  every task's /cancel has its /retry's operationId. `OpenApiDocument` serves the corrected document.
- Its error answers (InvalidArgument, NotFound, InternalServerError) say `detail` is a string; the service's
  error body (serving/gate.py) carries pydantic's list of problems there, one {loc, msg, type} each, and a
  `request_id`. `document()` publishes ERROR_BODY, what is sent.
- BentoML's SyncHTTPClient cannot submit a task (README "From Python" gives the working way).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

NULL = {"type": "null"}
DOCUMENT_REF = "#/components/schemas/"  # the ref_template BentoML passes when it writes the OpenAPI document


def openapi_30(schema: Any, document: bool = False) -> Any:
    """A pydantic JSON Schema as OpenAPI 3.0 (a copy): every `anyOf [X, null]` becomes X with `nullable: true`.
    `document`: for the OpenAPI document, also `examples` → `example` and BentoML's `type: file` → binary string."""
    if isinstance(schema, list):
        return [openapi_30(s, document) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: openapi_30(v, document) for k, v in schema.items()}
    branches = out.get("anyOf")
    if isinstance(branches, list) and NULL in branches:
        rest = [b for b in branches if b != NULL]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}  # the field's own title, description and default win over the branch's
        elif len(rest) == 1:
            out["allOf"] = rest  # OpenAPI 3.0 ignores keywords next to a $ref
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if document:
        if out.get("type") == "file":
            out["type"], out["format"] = "string", "binary"
        if isinstance(out.get("examples"), list) and isinstance(out.get("type"), str):
            examples = out.pop("examples")
            if examples:
                out.setdefault("example", examples[0])
    return out


class TaskStatus(BaseModel):
    """What a task's /submit, /status, /retry and /cancel answer (BentoML's task store)."""

    task_id: str
    status: Literal[
        "pending", "in_progress", "completed", "failed", "canceled"
    ]  # _bentoml_impl.tasks.ResultStatus
    created_at: str | None = Field(default=None, description="/status: when it was submitted")
    executed_at: str | None = Field(default=None, description="/status: when it ran (null until then)")


# every error answer, whatever its status (serving/gate.py makes them one JSON object)
ERROR_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "string",
            "title": "Message",
            "description": "What went wrong, for a person to read",
        },
        "detail": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {}}],
            "nullable": True,
            "title": "Error Detail",
            "description": "A request that failed validation: one {loc, msg, type} per problem",
        },
        "request_id": {
            "type": "string",
            "title": "Request ID",
            "description": "This request's X-Request-ID, as logged",
        },
    },
}
ERRORS = ("InvalidArgument", "NotFound", "InternalServerError")  # the error components BentoML publishes


def document(service) -> dict[str, Any]:
    """The OpenAPI document of `service` (a bentoml.Service, after publish()): BentoML's, corrected."""
    doc = service.openapi_spec.asdict()
    for name in ERRORS:
        if name in doc["components"]["schemas"]:
            old = doc["components"]["schemas"][name]
            doc["components"]["schemas"][name] = {
                **ERROR_BODY,
                "title": name,
                "description": old.get("description", name),
            }
    doc["components"]["schemas"]["TaskStatusResponse"] = {
        **openapi_30(TaskStatus.model_json_schema(), document=True),
        "title": "TaskStatusResponse",
    }
    for path, item in doc["paths"].items():
        cancel = item.get("put") if path.endswith("/cancel") else None
        if cancel and cancel.get("operationId", "").endswith("_retry"):
            cancel["operationId"] = cancel["operationId"].removesuffix("_retry") + "_cancel"
            cancel["x-bentoml-name"] = cancel.get("x-bentoml-name", "").removesuffix("_retry") + "_cancel"
    return doc


class OpenApiDocument:
    """ASGI middleware: GET /docs.json answers `document(service)` (built on the first request)."""

    def __init__(self, app, service) -> None:
        self.app, self.service = app, service
        self.body: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("path") != "/docs.json"
            or scope.get("method") not in ("GET", "HEAD")
        ):
            return await self.app(scope, receive, send)
        if self.body is None:
            self.body = json.dumps(document(self.service), ensure_ascii=False).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.body if scope["method"] == "GET" else b""})


def _published(method: classmethod, output: bool) -> classmethod:
    original = method.__func__

    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        document = str(kwargs.get("ref_template", "")).startswith(DOCUMENT_REF)
        if document and output:
            # an answer's schema, components included, is the serialised form: every field is sent (schemas.Body)
            kwargs["mode"] = "serialization"
        return openapi_30(original(cls, *args, **kwargs), document=document)

    model_json_schema.fanzha_openapi_30 = True
    return classmethod(model_json_schema)


def _classmethod_of(cls: type) -> classmethod:
    """The model_json_schema classmethod `cls` uses (its own or a base class's), unbound."""
    for klass in cls.__mro__:
        if "model_json_schema" in klass.__dict__:
            return klass.__dict__["model_json_schema"]
    raise AttributeError(f"{cls.__name__} has no model_json_schema")


def publish(service) -> None:
    """Correct what BentoML publishes for `service` (a bentoml.Service): its endpoints' input and output schemas
    become OpenAPI 3.0 (in /docs.json and /schema.json), and /docs.json is served by OpenApiDocument. Call it
    after the service's other middleware (the gate), so that /docs.json still passes the gate."""
    for api in service.apis.values():
        for spec, output in ((api.input_spec, False), (api.output_spec, True)):
            if not getattr(spec.model_json_schema, "fanzha_openapi_30", False):
                spec.model_json_schema = _published(_classmethod_of(spec), output)
    if not any(cls is OpenApiDocument for cls, _ in service.middlewares):
        service.add_asgi_middleware(OpenApiDocument, service=service)

"""The published contract (serving/openapi.py): /docs.json is valid OpenAPI 3.0, says what the task store
answers, and no list in any answer can be null."""

import pytest

from fanzha.serving.openapi import TaskStatus, openapi_30


@pytest.fixture(scope="module")
def doc(client) -> dict:
    return client.get("/docs.json").json()


def test_docs_json_is_valid_openapi(doc) -> None:
    from openapi_spec_validator import validate

    assert doc["openapi"].startswith("3.0")
    validate(doc)  # raises OpenAPIValidationError naming the first problem


def schemas_in(node, where: str = "#"):
    """Every schema object in the document, with where it is."""
    if isinstance(node, dict):
        if "type" in node or "allOf" in node or "$ref" in node:
            yield where, node
        for key, value in node.items():
            yield from schemas_in(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from schemas_in(value, f"{where}/{i}")


def answer_schemas(doc) -> list[tuple[str, dict]]:
    """The schemas of every 2xx answer: the responses' own, and every component they reach through $ref."""
    found = [
        (f"#/paths{path}/{method}", op["responses"]["200"]["content"]["application/json"]["schema"])
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "application/json" in op.get("responses", {}).get("200", {}).get("content", {})
    ]
    names, todo = set(), [schema for _, schema in found]
    while todo:
        for _, inner in schemas_in(todo.pop()):
            name = inner.get("$ref", "").removeprefix("#/components/schemas/")
            if name and name not in names:
                names.add(name)
                todo.append(doc["components"]["schemas"][name])
    return found + [
        (f"#/components/schemas/{name}", doc["components"]["schemas"][name]) for name in sorted(names)
    ]


def test_no_list_in_an_answer_is_nullable_and_every_field_is_sent(doc) -> None:
    arrays, objects = 0, 0
    for where, schema in answer_schemas(doc):
        for inner_where, inner in schemas_in(schema, where):
            if inner.get("type") == "array":
                arrays += 1
                assert not inner.get("nullable"), f"{inner_where}: a list that may be null"
            if (
                inner.get("type") == "object"
                and "properties" in inner
                and inner.get("title") != "TaskStatusResponse"
            ):
                objects += 1
                assert set(inner.get("required", [])) == set(inner["properties"]), (
                    f"{inner_where}: optional fields"
                )
    assert arrays > 30 and objects > 20, (arrays, objects)


def test_task_status_schema_names_what_the_task_store_sends(doc) -> None:
    from _bentoml_impl.tasks.result import ResultStatus

    published = doc["components"]["schemas"]["TaskStatusResponse"]
    assert published["properties"]["status"]["enum"] == [s.value for s in ResultStatus]
    assert published["required"] == ["task_id", "status"]  # /submit answers just these two
    assert set(TaskStatus.model_fields) == set(published["properties"])
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op]
    assert len(ids) == len(set(ids))


def test_openapi_30_turns_null_branches_into_nullable() -> None:
    assert openapi_30(
        {"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}], "default": None, "title": "Id"}
    ) == {"type": "string", "maxLength": 9, "default": None, "title": "Id", "nullable": True}
    assert openapi_30({"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}) == {
        "allOf": [{"$ref": "#/$defs/A"}],
        "nullable": True,
    }
    assert openapi_30({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}) == {
        "anyOf": [{"type": "string"}, {"type": "integer"}],
        "nullable": True,
    }
    assert openapi_30({"type": "file", "examples": ["a"]}) == {
        "type": "file",
        "examples": ["a"],
    }  # /schema.json: BentoML's own
    assert openapi_30({"type": "file", "examples": ["a"]}, document=True) == {
        "type": "string",
        "format": "binary",
        "example": "a",
    }


def test_bentoml_client_schema_keeps_files_and_reads_nullable_objects(service) -> None:
    routes = {route["name"]: route for route in service.schema()["routes"]}
    assert (
        routes["classify_image"]["input"]["properties"]["file"]["type"] == "file"
    )  # how its client knows to upload
    receipt = routes["report"]["output"]["properties"]
    assert receipt["verdict"]["nullable"] and receipt["verdict"]["properties"]["timeline"]["type"] == "array"
    assert not receipt["verdict"]["properties"]["timeline"].get("nullable")

"""A private BentoML home with the committed model imported, and one in-process app for all service tests."""

import os
import tempfile

import pytest

# before anything imports bentoml: a private model store, no usage tracking
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="fanzha-bentoml-")
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# the service's risk state and reports: a private SQLite file (a real server started by a test shares it)
os.environ["FANZHA_DATABASE_URL"] = "sqlite:///" + os.path.join(
    tempfile.mkdtemp(prefix="fanzha-db-"), "fanzha.db"
)
# content kept for review (FANZHA_DATA_DIR/review/): a private folder too
os.environ["FANZHA_DATA_DIR"] = tempfile.mkdtemp(prefix="fanzha-data-")


@pytest.fixture(scope="session")
def model_tag() -> str:
    from fanzha.serving.model_store import import_model

    return import_model()


@pytest.fixture(scope="session")
def service(model_tag):
    from fanzha.serving.service import Fanzha

    return Fanzha


@pytest.fixture(scope="session")
def app(service):
    """One ASGI app per process: BentoML registers its Prometheus metrics when an app is built."""
    return service.to_asgi()


@pytest.fixture(scope="session")
def client(app):
    from starlette.testclient import TestClient

    with TestClient(app) as c:
        yield c

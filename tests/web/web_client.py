"""What the web tests share besides fixtures: the tokens, and the app in-process (FastAPI's
TestClient). A module of its own name: every suite's conftest.py is called `conftest`."""

from __future__ import annotations

import warnings

from engine.web.app import create_app
from engine.web.config import WebConfig

with warnings.catch_warnings():  # Starlette's TestClient asks for httpx2, which this project does not use
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "write-token-0123456789abcdef"
READ_TOKEN = "read-token-fedcba9876543210"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client(config: WebConfig) -> TestClient:
    return TestClient(create_app(config))

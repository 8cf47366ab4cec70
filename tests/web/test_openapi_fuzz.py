"""The API fuzzed against its own OpenAPI spec (schemathesis): no input makes it fail (500), and
no operation that changes anything answers a request without the token with anything but 401."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from harness import sqlite_url
from hypothesis import HealthCheck, Phase, settings
from sample_ledger import Sample
from schemathesis.checks import not_a_server_error
from web_client import AUTH, TOKEN

from engine.web.app import create_app
from engine.web.config import WebConfig

# /report takes the parameters of /api/report (fuzzed) and draws two charts a call: a second each.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/report")


@pytest.fixture(scope="module")
def api_schema(sample_file: tuple[Path, Sample], tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("fuzzed")
    shutil.copyfile(sample_file[0], folder / "ledger.db")
    # max_wait 0: a generated `wait` never holds a request open for an engine that is not running.
    app = create_app(WebConfig(sqlite_url(folder), token=TOKEN, max_wait=0))
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    loaded.config.phases.update(phases=["examples", "coverage", "fuzzing"])  # not the stateful phase
    return loaded


@schema.parametrize()
@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_input_fails_the_api_and_no_write_passes_without_the_token(case: Any) -> None:
    if case.method.upper() != "GET":
        anonymous = case.call()
        if case.method.upper() == case.operation.method.upper():
            # 413: a generated batch over the body limit is refused before its token is looked at.
            assert anonymous.status_code in (401, 413), (case.method, case.path, anonymous.status_code)
        else:  # the coverage phase tries the methods no route has
            assert anonymous.status_code == 405, (case.method, case.path, anonymous.status_code)
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

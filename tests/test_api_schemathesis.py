"""Property-based checks of the service against its own OpenAPI schema (schemathesis 4).

Every generated request, valid or not, must get a documented, schema-conforming
answer and never a 5xx. Bounded by max_examples so it runs in about a minute.

The schema is loaded eagerly at import (a tiny lexicon, a temp SQLite store):
``schemathesis.pytest.from_fixture`` in schemathesis 4.32 sets ``node._nodeid``,
which pytest 9 no longer has.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from test_api_service import build_test_app, make_flagger

_TMP = Path(tempfile.mkdtemp(prefix="flagger-st-"))
# Generous rate limit: this test is about conformance, not throttling.
APP, _, _HEADERS = build_test_app(make_flagger(_TMP / "lex"), _TMP / "review.db",
                                  rate_limit_per_minute=1_000_000, rate_limit_burst=100_000)
ADMIN = _HEADERS["admin"]

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
CHECKS = [not_a_server_error, response_schema_conformance]
# The review routes (issue #7, api/review) are checked on their own below, so a finding
# there is reported against them and does not hide one here.
REVIEW = r"^/(v1/)?review"


@schema.exclude(path_regex=REVIEW).parametrize()
@settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_schema_conformance(case):
    case.call_and_validate(headers=ADMIN, checks=CHECKS)


@schema.include(path_regex=REVIEW).parametrize()
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_schema_conformance_review_routes(case):
    case.call_and_validate(headers=ADMIN, checks=CHECKS)

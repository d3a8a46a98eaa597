"""``SamplingParams.response_format`` through the client SDK against a real server.

The served model has random weights; a parsed, schema-valid result is the server's constrained
decoding at work.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import FAST, TEXT_MODEL

import workbench_client as wc
from workbench_client import ServiceClient
from workbench_client.types import JsonSchemaFormat, ResponseFormat, SamplingParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def service(server: str) -> ServiceClient:
    return ServiceClient(base_url=server, retry_policy=FAST)


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "n": {"type": "integer"}},
    "required": ["name", "n"],
    "additionalProperties": False,
}


def test_a_json_schema_response_format_gives_schema_valid_samples(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    params = SamplingParams(
        max_tokens=40,
        seed=5,
        response_format=ResponseFormat(
            type="json_schema", json_schema=JsonSchemaFormat(schema=SCHEMA, strict=True)
        ),
    )
    out = sampler.sample("Give me JSON", 3, params).result(timeout=120)
    assert len(out.sequences) == 3
    for seq in out.sequences:
        value = json.loads(seq.text)
        assert set(value) == {"name", "n"} and isinstance(value["n"], int)
        assert len(value["name"]) <= 8


def test_a_regex_response_format_and_a_bad_one(service: ServiceClient) -> None:
    sampler = service.create_sampling_client(base_model=TEXT_MODEL)
    fmt = ResponseFormat(type="regex", regex=r"(yes|no), [0-9]{2}")
    out = sampler.sample("Answer", 1, SamplingParams(max_tokens=10, response_format=fmt))
    assert re.fullmatch(r"(yes|no), [0-9]{2}", out.result(timeout=120).sequences[0].text)
    bad = ResponseFormat(type="regex", regex="(unclosed")
    with pytest.raises(wc.BadRequestError) as info:
        sampler.sample("x", 1, SamplingParams(response_format=bad)).result(timeout=120)
    assert "response_format" in str(info.value)


def test_a_response_format_needs_its_field() -> None:
    with pytest.raises(ValueError, match="json_schema"):
        ResponseFormat(type="json_schema")

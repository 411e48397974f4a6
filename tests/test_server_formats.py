"""Structured output over HTTP: ``response_format`` (json_object, json_schema) through
the official ``openai`` client, on ``ponder serve`` with the real small model."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.server import ServerSettings, create_app
from ponder.server.main import serving_in_background
from ponder.server.schemas import FORMAT_REFUSED, ApiError, parse_run
from ponder.types import RESPONSE_FORMATS

SERVED = "smollm2-135m-instruct"
SETTINGS = ServerSettings(model=SERVED, default_strategy="greedy", max_budget=4, max_tokens=160)
ASK = [{"role": "user", "content": "Describe a cat as JSON with its name and age."}]
CAT = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


class Cat(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    age: int


@pytest.fixture(scope="module")
def client(engine) -> Iterator[openai.OpenAI]:
    with serving_in_background(create_app(engine, SETTINGS)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_json_object_reply_parses(client):
    r = client.chat.completions.create(
        model=SERVED, messages=ASK, max_tokens=120, response_format={"type": "json_object"}
    )
    assert r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(r.choices[0].message.content), dict)


def test_json_schema_reply_validates_and_the_sdk_parses_it(client):
    r = client.chat.completions.create(
        model=SERVED,
        messages=ASK,
        max_tokens=120,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT}},
    )
    value = json.loads(r.choices[0].message.content)
    assert set(value) == {"name", "age"} and type(value["age"]) is int
    parsed = client.chat.completions.parse(
        model=SERVED, messages=ASK, max_tokens=120, response_format=Cat
    )
    assert isinstance(parsed.choices[0].message.parsed, Cat)


def test_every_voted_sample_takes_the_format(client):
    stream = client.chat.completions.create(
        model="ponder/self-consistency@3",
        messages=ASK,
        max_tokens=120,
        temperature=1.0,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT}},
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert set(json.loads(text)) == {"name", "age"}


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format.type"),
        ({"json_schema": {"schema": CAT}}, "response_format.type"),
        ({"type": "json_schema"}, "response_format.json_schema"),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format.json_schema.schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}},
            "response_format.json_schema.schema",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}},
            "response_format.json_schema.schema",
        ),
        ({"type": "json_object", "schema": {"$ref": "#/nowhere"}}, "response_format.schema"),
        ({"type": "json_object", "schema": {"maxLength": 10**5}}, "response_format.schema"),
    ],
)
def test_a_bad_format_is_a_400_naming_the_field(client, response_format, param):
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(
            model=SERVED, messages=ASK, max_tokens=4, response_format=response_format, stream=True
        )
    assert br.value.param == param and param in br.value.message


@pytest.mark.parametrize("strategy", FORMAT_REFUSED)
def test_strategies_that_ask_for_other_text_refuse_a_format(client, strategy):
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(
            model=f"ponder/{strategy}@2",
            messages=ASK,
            max_tokens=4,
            response_format={"type": "json_object"},
        )
    assert br.value.param == "response_format" and strategy in br.value.message


def test_a_continued_reply_outside_the_format_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as br:
        client.chat.completions.create(
            model=SERVED,
            messages=[*ASK, {"role": "assistant", "content": "Sure! Here"}],
            max_tokens=8,
            response_format={"type": "json_object"},
            extra_body={"continue_final_message": True},
        )
    assert "response format" in br.value.message
    r = client.chat.completions.create(
        model=SERVED,
        messages=[*ASK, {"role": "assistant", "content": '{"name": "Tom'}],
        max_tokens=60,
        response_format={"type": "json_object"},
        extra_body={"continue_final_message": True},
    )
    assert isinstance(json.loads('{"name": "Tom' + r.choices[0].message.content), dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
schema_keys = st.sampled_from(
    [
        "type",
        "properties",
        "required",
        "items",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "additionalProperties",
        "minimum",
        "maximum",
        "format",
        "$defs",
    ]
)
schemas = st.recursive(
    st.dictionaries(schema_keys, json_values, max_size=4),
    lambda inner: st.dictionaries(schema_keys, inner | json_values, max_size=4),
    max_leaves=12,
)
formats = st.one_of(
    st.dictionaries(st.text(max_size=12), json_values, max_size=3),
    st.builds(lambda s: {"type": "json_object", "schema": s}, schemas),
    st.builds(
        lambda s, name: {"type": "json_schema", "json_schema": {"name": name, "schema": s}},
        schemas,
        json_values,
    ),
)


@settings(max_examples=150, deadline=None)
@given(formats)
def test_any_response_format_is_taken_or_refused_with_a_400(fmt):
    body = {"model": SERVED, "messages": ASK, "response_format": fmt}
    try:
        spec = parse_run(body, "chat", SETTINGS)
    except ApiError as exc:
        assert exc.status == 400 and exc.param and exc.param.startswith("response_format")
    else:
        assert spec.response_format is None or spec.response_format.type in RESPONSE_FORMATS

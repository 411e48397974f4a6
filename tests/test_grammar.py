"""Response formats (JSON, JSON Schema) enforced by llama.cpp grammars while the engine
samples, on the real small model."""

from __future__ import annotations

import json

import pytest

from ponder.engines.llamacpp import grammar
from ponder.types import GREEDY, Request, ResponseFormat, SamplingParams

ASK = ({"role": "user", "content": "Describe a cat as JSON with its name and age."},)
CAT = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer"},
        "indoor": {"type": "boolean"},
    },
    "required": ["name", "age", "indoor"],
    "additionalProperties": False,
}


def is_cat(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"name", "age", "indoor"}
        and isinstance(value["name"], str)
        and len(value["name"]) <= 20
        and type(value["age"]) is int
        and isinstance(value["indoor"], bool)
    )


def test_json_object_output_parses(engine):
    fmt = ResponseFormat("json_object")
    [[plain]] = engine.generate_sync([Request(ASK, GREEDY.with_(max_tokens=48))])
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.text)  # the model alone does not write bare JSON
    [[out]] = engine.generate_sync(
        [Request(ASK, GREEDY.with_(max_tokens=120), response_format=fmt)]
    )
    assert out.finish_reason == "stop"
    assert isinstance(json.loads(out.text), dict)


def test_json_schema_holds_for_every_sample_of_a_request(engine):
    fmt = ResponseFormat.json_schema(CAT)
    params = SamplingParams(temperature=1.0, max_tokens=120, seed=3)
    [outs] = engine.generate_sync([Request(ASK, params, n=6, response_format=fmt)])
    assert len(outs) == 6
    for c in outs:
        assert c.finish_reason == "stop", c.text
        assert is_cat(json.loads(c.text)), c.text
    assert len({c.text for c in outs}) > 1  # each sample has its own grammar state


def test_a_continued_reply_starts_inside_the_format(engine):
    fmt = ResponseFormat.json_schema(CAT)
    partial = '{"name": "Tom'
    req = Request(ASK, GREEDY.with_(max_tokens=100), partial=partial, response_format=fmt)
    [[out]] = engine.generate_sync([req])
    assert is_cat(json.loads(partial + out.text)), out.text


def test_a_continued_reply_outside_the_format_fails_that_request_alone(engine):
    fmt = ResponseFormat("json_object")
    bad = Request(ASK, GREEDY.with_(max_tokens=8), partial="Sure!", response_format=fmt)
    good = Request(ASK, GREEDY.with_(max_tokens=40), response_format=fmt)
    futures = engine.submit_many([bad, good])
    with pytest.raises(ValueError, match="does not begin a reply in the response format"):
        futures[0].result()
    [out] = futures[1].result()
    assert out.text.startswith("{")


def test_the_format_does_not_change_its_log_probabilities(engine):
    fmt = ResponseFormat("json_object")
    params = GREEDY.with_(max_tokens=6, logprobs=True)
    [[out]] = engine.generate_sync([Request(ASK, params, response_format=fmt)])
    assert out.logprobs is not None and len(out.logprobs) == out.tokens
    assert out.logprobs[0].token == out.text[: len(out.logprobs[0].token)]
    assert all(t.logprob <= 0 for t in out.logprobs)


def test_response_format_values_are_checked():
    with pytest.raises(ValueError, match="must be one of"):
        ResponseFormat("xml")
    with pytest.raises(ValueError, match="needs a schema"):
        ResponseFormat("json_schema")
    with pytest.raises(ValueError, match="not valid JSON"):
        ResponseFormat("json_schema", "{nope")
    with pytest.raises(ValueError, match="must be a JSON object"):
        ResponseFormat("json_schema", "[1]")
    with pytest.raises(ValueError, match="takes no schema"):
        ResponseFormat("json_object", "{}")
    fmt = ResponseFormat.json_schema(CAT, name="cat")
    assert fmt.as_openai() == {"type": "json_schema", "json_schema": {"name": "cat", "schema": CAT}}
    assert ResponseFormat("json_object").as_openai() == {"type": "json_object"}


def test_a_schema_the_converter_cannot_handle_is_refused():
    grammar.check(ResponseFormat.json_schema(CAT))
    with pytest.raises(ValueError, match="cannot be turned into a grammar"):
        grammar.check(ResponseFormat.json_schema({"$ref": "#/$defs/missing"}))
    # a bound this large nests the grammar deeper than llama.cpp's parser survives
    with pytest.raises(ValueError, match="nests 100000 groups deep"):
        grammar.check(ResponseFormat.json_schema({"type": "string", "maxLength": 100000}))

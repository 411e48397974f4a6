"""Property-based fuzzing of the HTTP API on the real small model.

Random bodies, from nearly valid requests to arbitrary JSON and raw bytes, go to every
POST endpoint of a server on loopback. Whatever arrives: no 5xx, every error in
OpenAI's shape, every answer within its timeout, and the server healthy afterwards.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponder.server import ServerSettings, create_app
from ponder.server.main import serving_in_background
from ponder.server.schemas import model_names
from ponder.strategies import create, names

SETTINGS = ServerSettings(
    model="smollm2", default_budget=1, max_budget=2, max_tokens=2, concurrency=4, queue_size=8
)
ENDPOINTS = ["/v1/chat/completions", "/v1/completions", "/ponder/runs"]
STRATEGY_SETTINGS = sorted(
    {f.name for n in names() for f in dataclasses.fields(create(n).config)}  # type: ignore[attr-defined]
)
ERROR_KEYS = {"message", "type", "param", "code"}
# Valid requests run cheap strategies (a few engine calls each), so that the run stays
# short; every strategy's name and settings still arrive among the hostile values.
CHEAP = ["ponder", "ponder/greedy", "ponder/vote@2", "ponder/sample", "ponder/weighted-vote"]
REQUEST_SECONDS = 60.0

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
small_ints = st.integers(min_value=-3, max_value=6)
valid_messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.text(min_size=1, max_size=30)
            | st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=10)}),
                min_size=1,
                max_size=2,
            ),
        }
    ),
    min_size=1,
    max_size=3,
)
valid_ponder = st.fixed_dictionaries(
    {},
    optional={
        "strategy": st.sampled_from(["greedy", "self-consistency", "sample", "weighted-vote"]),
        "budget": st.integers(min_value=1, max_value=2),
        "scorer": st.sampled_from(["judge", "self-certainty"]),
        "config": st.fixed_dictionaries(
            {}, optional={"seed": st.integers(min_value=-1, max_value=2**63 - 1)}
        ),
    },
)
valid = st.fixed_dictionaries(
    {
        "model": st.sampled_from(CHEAP),
        "messages": valid_messages,
        "prompt": st.text(min_size=1, max_size=20),
    },
    optional={
        "temperature": st.floats(min_value=0, max_value=2),
        "top_p": st.floats(min_value=0.01, max_value=1),
        "seed": st.integers(min_value=-1, max_value=2**63 - 1),
        "max_tokens": st.integers(min_value=1, max_value=2),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "ponder": valid_ponder,
        "user": st.text(max_size=8),
    },
)
FIELDS = ["model", "messages", "prompt", "temperature", "top_p", "seed", "max_tokens", "n"]
FIELDS += ["stream", "stream_options", "ponder"]
hostile_values = (
    json_values
    | small_ints
    | st.integers(min_value=2**62, max_value=2**80)
    | st.sampled_from(["", "NaN", "ponder/vote@²", "ponder/vote@-1", "ponder/@2", "ponder/x@"])
    | st.sampled_from(model_names())
)
one_field_wrong = st.tuples(valid, st.sampled_from(FIELDS), hostile_values).map(
    lambda t: t[0] | {t[1]: t[2]}
)
config_wrong = st.tuples(
    valid, st.sampled_from(names()), st.sampled_from(STRATEGY_SETTINGS), json_values
).map(lambda t: t[0] | {"ponder": {"strategy": t[1], "budget": 1, "config": {t[2]: t[3]}}})
one_field_missing = st.tuples(valid, st.sampled_from(FIELDS)).map(
    lambda t: {k: v for k, v in t[0].items() if k != t[1]}
)
bodies = (
    valid.map(lambda b: json.dumps(b).encode())
    | one_field_missing.map(lambda b: json.dumps(b).encode())
    | one_field_wrong.map(lambda b: json.dumps(b).encode())
    | config_wrong.map(lambda b: json.dumps(b).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=64)
    | st.sampled_from([b"[" * 50_000, b'{"model":' * 3000, b'{"temperature": NaN}', b""])
)


@pytest.fixture(scope="module")
def base(engine) -> Iterator[str]:
    with serving_in_background(create_app(engine, SETTINGS)) as url:
        yield url


def post(base: str, path: str, body: bytes) -> tuple[int, Any]:
    """The status and, for an error, its JSON body; streams are read to their end."""
    headers = {"Content-Type": "application/json"}
    with httpx.stream(
        "POST", base + path, content=body, headers=headers, timeout=REQUEST_SECONDS
    ) as r:
        payload = r.read()
    return r.status_code, json.loads(payload) if r.status_code >= 400 else None


@settings(
    max_examples=100,
    deadline=REQUEST_SECONDS * 1000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=True,
)
@given(path=st.sampled_from(ENDPOINTS), body=bodies)
def test_no_body_gets_a_5xx_or_hangs(base, path, body):
    status, error = post(base, path, body)
    assert status < 500, (status, error, body[:300])
    if error is not None:
        assert set(error["error"]) == ERROR_KEYS, error
        assert isinstance(error["error"]["message"], str) and error["error"]["message"]


def test_the_server_is_healthy_after_the_fuzzing(base):
    assert httpx.get(base + "/health").status_code == 200
    body = {"model": "ponder/vote@2", "messages": [{"role": "user", "content": "2+2?"}]}
    r = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert "\nponder_engine_up 1\n" in httpx.get(base + "/metrics").text

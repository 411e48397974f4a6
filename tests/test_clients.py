"""Stock clients against ``ponder serve`` on the real small model: LangChain's
``ChatOpenAI`` as a user would point it at the server (the served model's name)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from ponder.server import ServerSettings, create_app
from ponder.server.main import serving_in_background

langchain_openai = pytest.importorskip("langchain_openai")

SERVED = "smollm2-135m-instruct"
SETTINGS = ServerSettings(
    model=SERVED, default_strategy="greedy", default_budget=1, max_budget=4, max_tokens=64
)
QUESTION = "What is 2 plus 3? Answer with a number."


@pytest.fixture(scope="module")
def base(engine) -> Iterator[str]:
    with serving_in_background(create_app(engine, SETTINGS)) as url:
        yield url


def chat(base: str, **options):
    return langchain_openai.ChatOpenAI(
        model=SERVED, base_url=base + "/v1", api_key="unused", max_retries=0, **options
    )


def test_langchain_invoke_stream_and_batch(base):
    llm = chat(base, max_tokens=12)
    reply = llm.invoke(QUESTION)
    assert reply.content and reply.response_metadata["model_name"] == SERVED
    assert reply.usage_metadata["output_tokens"] > 0
    streamed = "".join(part.content for part in llm.stream(QUESTION))
    assert streamed == reply.content  # greedy: the same answer
    replies = llm.batch([QUESTION, "Say hello."])
    assert len(replies) == 2 and replies[0].content == reply.content


def test_langchain_stop_is_honoured(base):
    llm = chat(base, max_tokens=40)
    text = llm.invoke("Write a short story about a dragon.").content
    word = text.split()[len(text.split()) // 2]
    stopped = llm.invoke("Write a short story about a dragon.", stop=[word]).content
    assert stopped == text[: text.index(word)]


def test_langchain_ponder_strategy_through_extra_body(base):
    llm = chat(base, max_tokens=8, extra_body={"ponder": {"strategy": "vote", "budget": 2}})
    reply = llm.invoke(QUESTION)
    assert reply.content


def test_langchain_structured_output_and_tools_are_refused_by_name(base):
    llm = chat(base, max_tokens=8)
    schema = {
        "title": "Answer",
        "type": "object",
        "properties": {"value": {"type": "integer"}},
        "required": ["value"],
    }
    with pytest.raises(openai.BadRequestError) as br:
        llm.with_structured_output(schema, method="json_schema").invoke(QUESTION)
    assert br.value.param == "response_format"
    with pytest.raises(openai.BadRequestError) as br:
        llm.with_structured_output(schema, method="function_calling").invoke(QUESTION)
    assert br.value.param in ("tools", "tool_choice")

"""Stock clients against ``ponder serve`` on the real small model: LangChain's
``ChatOpenAI`` as a user would point it at the server (the served model's name), and
its_hub's own searches (self-consistency, particle filtering over continued steps)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
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
    assert "e" in text
    stopped = llm.invoke("Write a short story about a dragon.", stop=["e"])
    assert "e" not in stopped.content
    assert stopped.response_metadata["finish_reason"] == "stop"


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


# ---- its_hub: a client that runs its own search over ponder's samples ---------------


@pytest.fixture(scope="module")
def its_lm(base):
    its_lm_module = pytest.importorskip("its_hub.core.lms.openai_lm")
    return its_lm_module.OpenAICompatibleLanguageModel(
        endpoint=base + "/v1",
        api_key="unused",
        model_name="ponder/sample@1",
        max_completion_tokens=16,
        temperature=0.8,
        max_tries=1,
    )


def test_its_hub_self_consistency_gets_distinct_samples(its_lm):
    sc = pytest.importorskip("its_hub.core.algorithms.self_consistency")
    result = sc.SelfConsistency().infer(its_lm, QUESTION, budget=4, return_response_only=False)
    texts = [r["content"] for r in result.responses]
    assert len(texts) == 4 and len(set(texts)) > 1  # a seedless request draws a fresh seed


def test_its_hub_particle_filtering_continues_its_partial_steps(base, its_lm):
    pg = pytest.importorskip("its_hub.core.algorithms.particle_gibbs")
    sg_module = pytest.importorskip("its_hub.core.lms.step_generation")
    prm_module = pytest.importorskip("its_hub.api.reward_models.prm")

    class Longer(prm_module.AbstractProcessRewardModel):
        """Prefers longer partial solutions (enough to drive the search)."""

        def score(self, prompt_or_messages, steps):
            return [min(0.9, 0.1 + len(s) / 400) for s in steps]

        async def ascore(self, prompt_or_messages, steps):
            return self.score(prompt_or_messages, steps)

    sg = sg_module.StepGeneration(max_steps=3, step_token="\n", temperature=0.8)
    pf = pg.ParticleFiltering(sg, Longer())
    result = pf.infer(
        its_lm, "Count from 1 to 5, one per line.", budget=2, return_response_only=False
    )
    assert len(result.responses) == 2 and result.the_one["content"]
    continued = []
    for run in httpx.get(base + "/ponder/runs").json()["recent"]:
        with httpx.stream("GET", f"{base}/ponder/runs/{run['id']}/events", timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and '"type":"batch"' in line:
                    event = json.loads(line[6:])
                    continued += [g for g in event["groups"] if g["after"]]
    # later steps continue the assistant text written so far, and stop at the step token
    assert continued and all("\n" not in s["text"] for g in continued for s in g["samples"])

"""Stock clients against ``ponder serve`` on the real small model: LangChain's
``ChatOpenAI`` as a user would point it at the server (the served model's name), and
its_hub's own searches (self-consistency, particle filtering over continued steps,
best-of-n with its LLM judge asking for a JSON schema); and OptiLLM's
self_consistency proxied to ponder, when ``make peers`` installed OptiLLM."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from processes import stop, wait_until_up

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


ANSWER = {
    "title": "Answer",
    "type": "object",
    "properties": {"value": {"type": "integer"}},
    "required": ["value"],
}


def test_langchain_structured_output_is_honoured(base):
    llm = chat(base, max_tokens=32)
    for method in ("json_schema", "json_mode"):
        value = llm.with_structured_output(ANSWER, method=method).invoke(
            QUESTION + " Reply in JSON with the key value."
        )
        assert isinstance(value, dict) and type(value.get("value")) is int, (method, value)


def test_langchain_tools_are_refused_by_name(base):
    llm = chat(base, max_tokens=8)
    with pytest.raises(openai.BadRequestError) as br:
        llm.with_structured_output(ANSWER, method="function_calling").invoke(QUESTION)
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


def test_its_hub_best_of_n_with_its_llm_judge(base, its_lm):
    bon = pytest.importorskip("its_hub.core.algorithms.bon")
    judge_module = pytest.importorskip("its_hub.core.reward_models.llm_judge")
    lm_module = pytest.importorskip("its_hub.core.lms.openai_lm")
    replies: list[str] = []

    class Recorded(judge_module.LLMJudge):
        def _parse_score(self, response_content):
            replies.append(response_content)
            return super()._parse_score(response_content)

    judge_lm = lm_module.OpenAICompatibleLanguageModel(
        endpoint=base + "/v1",
        api_key="unused",
        model_name=SERVED,
        max_completion_tokens=64,
        max_tries=1,
    )
    result = bon.BestOfN(Recorded(judge_lm)).infer(
        its_lm, QUESTION, budget=3, return_response_only=False
    )
    assert len(result.responses) == 3 and result.the_one["content"]
    assert replies, "the samples were all alike: nothing was judged"
    for reply in replies:  # the judge's json_schema format holds (its score comes first)
        assert re.match(r'\{ ?"score": ?-?[0-9]', reply), reply
    assert result.scores[result.selected_index] == max(result.scores)


# ---- OptiLLM: a proxy that runs its own approaches over ponder serve ---------------

OPTILLM = Path.home() / ".cache" / "ponder" / "optillm" / "bin" / "optillm"


@pytest.fixture(scope="module")
def optillm_url(base, tmp_path_factory) -> Iterator[str]:
    if not OPTILLM.exists():
        pytest.skip(f"OptiLLM is not installed at {OPTILLM} (make peers installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("optillm") / "optillm.log"
    cmd = [str(OPTILLM), "--base-url", base + "/v1", "--port", str(port)]
    env = {**os.environ, "OPENAI_API_KEY": "unused"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=log.parent)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(proc, f"http://127.0.0.1:{port}/health", log, "optillm", 300, 0.5)
        yield url
    finally:
        stop(proc)


def test_optillm_self_consistency_through_ponder(base, optillm_url):
    client = openai.OpenAI(base_url=optillm_url, api_key="unused", max_retries=0, timeout=600)
    reply = client.chat.completions.create(
        model="self_consistency-ponder/sample@2",
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=32,
    )
    assert reply.choices[0].message.content
    runs = httpx.get(base + "/ponder/runs").json()["recent"]
    # OptiLLM's self_consistency draws its samples as separate requests to ponder
    assert sum(r["model"] == "ponder/sample@2" for r in runs) >= 5

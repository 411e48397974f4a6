"""The sampling / selection / adaptive strategies against the scripted engine (exact), plus
one short end-to-end run of each on the real small model."""

import asyncio
import math
from dataclasses import replace

import pytest
from scripted import ScriptedEngine

from ponder.scoring import scorer
from ponder.strategies import create
from ponder.types import Budget, Problem, TokenLogprob

Q = "What is 6 times 7?"
PROBLEM = Problem.from_question(Q)


def run(name, engine, n, score=None, problem=PROBLEM, **config):
    strategy = create(name, **config)
    return asyncio.run(strategy.run(problem, engine, score, Budget(n=n)))


def answering(answers, **kw):
    """Sample i answers answers[i]."""
    return ScriptedEngine(lambda prefix, i: f"Reasoning. The answer is {answers[i]}", **kw)


def in_sequence(answers, **kw):
    """The k-th sample drawn (over all requests) answers answers[k]."""
    it = iter(answers)
    return ScriptedEngine(lambda prefix, i: f"The answer is {next(it)}", **kw)


def by_answer(table, default=0.0):
    """An outcome scorer giving a text the value of the first key of ``table`` it ends with."""
    return scorer(lambda p, text: next((v for k, v in table.items() if text.endswith(k)), default))


def check_usage(r, engine_samples=None):
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates)
    if engine_samples is not None:
        assert len(r.candidates) == engine_samples


# ---- sample ------------------------------------------------------------------------------


def test_sample_returns_the_first_sample_the_verifier_accepts():
    eng = answering(["1", "2", "3", "4"])
    r = run("sample", eng, 4, by_answer({"3": 1.0, "4": 1.0}))
    assert r.answer == "3"
    assert r.trace["passed"] == [2, 3] and r.trace["accepted"] == 2
    assert [c.score for c in r.candidates] == [0.0, 0.0, 1.0, 1.0]
    assert r.usage.scorer_calls == 4
    assert len(eng.requests) == 1 and eng.requests[0].n == 4
    check_usage(r, 4)


def test_sample_without_an_accepted_sample_falls_back_to_the_best_score():
    r = run("sample", answering(["1", "2", "3"]), 3, by_answer({"2": 0.4, "3": 0.1}))
    assert r.answer == "2" and r.trace["accepted"] is None and r.trace["passed"] == []
    r = run("sample", answering(["1", "2"]), 2, by_answer({"2": 0.4}), threshold=0.3)
    assert r.answer == "2" and r.trace["accepted"] == 1


def test_sample_without_a_scorer_takes_the_most_likely_sample():
    eng = answering(["1", "2", "3"], logprob=lambda t: -0.1 if t.endswith("2") else -2.0)
    r = run("sample", eng, 3)
    assert r.answer == "2" and r.trace["picked_by"] == "mean-logprob"
    r = run("sample", answering(["1", "2"], logprobs=False), 2)
    assert r.answer == "1" and r.trace["picked_by"] == "first"


# ---- weighted-vote -----------------------------------------------------------------------


def test_weighted_vote_by_score_beats_the_plain_majority():
    eng = answering(["7", "7", "7", "42", "42"])
    r = run("weighted-vote", eng, 5, by_answer({"42": 0.9, "7": 0.2}))
    assert r.answer == "42"
    assert r.trace["weight"] == "score"
    assert r.trace["cluster_weights"] == pytest.approx({"7": 0.6, "42": 1.8})
    assert [c.votes for c in r.candidates] == [3, 3, 3, 2, 2]
    assert r.usage.scorer_calls == 5
    check_usage(r, 5)


def test_weighted_vote_by_path_probability():
    lp = {"42": -0.1, "7": -3.0}
    eng = answering(["7", "7", "7", "42", "42"], logprob=lambda t: lp[t.split()[-1]])
    r = run("weighted-vote", eng, 5)
    assert r.answer == "42" and r.trace["weight"] == "path-probability"
    a, b = 2 * math.exp(-0.1), 3 * math.exp(-3.0)
    assert r.trace["cluster_weights"]["42"] == pytest.approx(a / (a + b))
    # 5 tokens per text: the unnormalised weight is the sum of the token log-probs
    r = run("weighted-vote", eng, 5, length_normalize=False)
    assert r.trace["log_weights"] == pytest.approx([-15.0] * 3 + [-0.5] * 2)
    assert r.answer == "42"


def test_weighted_vote_invalid_setups():
    with pytest.raises(ValueError, match="needs a scorer"):
        run("weighted-vote", answering(["1"]), 1, weight="score")
    with pytest.raises(ValueError, match="log-probabilities"):
        run("weighted-vote", answering(["1"], logprobs=False), 1)
    with pytest.raises(ValueError, match="weight must be one of"):
        create("weighted-vote", weight="votes")


# ---- rpc ---------------------------------------------------------------------------------


def test_rpc_prunes_unlikely_paths_before_voting():
    answers = ["7", "7", "7", "7", "42", "42", "42"]
    eng = ScriptedEngine(
        lambda prefix, i: f"Path {i}. The answer is {answers[i]}",
        logprob=lambda t: -0.1 if t.endswith("42") else -3.0,
    )
    r = run("rpc", eng, 7)
    assert r.answer == "42"
    assert r.trace["pruned"] == [0, 1, 2, 3]
    assert [c.votes for c in r.candidates] == [0, 0, 0, 0, 3, 3, 3]
    assert r.trace["answer_scores"] == pytest.approx({"42": 3 * math.exp(-0.1)})
    check_usage(r, 7)
    assert run("self-consistency", eng, 7).answer == "7"


def test_rpc_counts_each_distinct_path_once():
    # three copies of one "42" path (p = 0.5) lose to two distinct "7" paths (p = 0.4 each)
    texts = ["Same. The answer is 42"] * 3 + ["One. The answer is 7", "Two. The answer is 7"]
    eng = ScriptedEngine(
        lambda prefix, i: texts[i],
        logprob=lambda t: math.log(0.5) if t.endswith("42") else math.log(0.4),
    )
    r = run("rpc", eng, 5, pruning="none")
    assert r.trace["answer_scores"] == pytest.approx({"42": 0.5, "7": 0.8})
    assert r.answer == "7"
    assert run("weighted-vote", eng, 5).answer == "42"


def test_rpc_leaves_empty_paths_out_of_the_weibull_fit():
    # two empty paths (p = 0) used to be fitted as p = 1e-300 and became the low component
    # on their own, so the two unlikely "7" paths escaped pruning
    p = {2: 0.6, 3: 0.62, 4: 0.65, 5: 0.3, 6: 0.31}
    eng = ScriptedEngine(
        lambda prefix, i: "" if i < 2 else f"Path {i}. The answer is {42 if i < 5 else 7}",
        logprob=lambda t: math.log(p[int(t.split()[1].rstrip(".")) if t else 2]),
    )
    r = run("rpc", eng, 7)
    assert r.trace["probabilities"][:2] == [0.0, 0.0]
    assert r.trace["pruned"] == [0, 1, 5, 6]
    assert r.answer == "42" and set(r.trace["answer_scores"]) == {"42"}


def test_rpc_invalid_setups():
    with pytest.raises(ValueError, match="log-probabilities"):
        run("rpc", answering(["1"], logprobs=False), 1)
    with pytest.raises(ValueError, match="pruning must be one of"):
        create("rpc", pruning="median")
    with pytest.raises(ValueError, match="prune_quantile"):
        create("rpc", prune_quantile=1.0)


# ---- best-of-n, weighted-best-of-n -------------------------------------------------------


def test_best_of_n_picks_the_scorers_favourite():
    eng = answering(["1", "2", "3"])
    r = run("best-of-n", eng, 3, by_answer({"1": 0.1, "2": 0.8, "3": 0.5}))
    assert r.answer == "2" and r.trace["best_index"] == 1 and r.best.score == 0.8
    assert len(eng.requests) == 1 and r.usage.scorer_calls == 3
    check_usage(r, 3)


def test_weighted_best_of_n_sums_scores_per_answer():
    answers = ["5", "5", "9"]
    table = {"5": 0.4, "9": 0.7}
    assert run("best-of-n", answering(answers), 3, by_answer(table)).answer == "9"
    r = run("weighted-best-of-n", answering(answers), 3, by_answer(table))
    assert r.answer == "5"
    assert r.trace["cluster_scores"] == pytest.approx({"5": 0.8, "9": 0.7})
    check_usage(r, 3)


@pytest.mark.parametrize("name", ["best-of-n", "weighted-best-of-n", "best-of-majority"])
def test_scorer_strategies_need_a_scorer(name):
    with pytest.raises(ValueError, match="needs a scorer"):
        run(name, answering(["1"]), 1)


# ---- best-of-majority --------------------------------------------------------------------


def test_best_of_majority_ranks_only_frequent_answers():
    answers = ["9", "5", "5", "7", "7"]
    table = {"9": 1.0, "7": 0.8, "5": 0.5}
    assert run("best-of-n", answering(answers), 5, by_answer(table)).answer == "9"
    r = run("best-of-majority", answering(answers), 5, by_answer(table), alpha=0.3)
    assert r.answer == "7"
    assert r.trace["survivors"] == ["5", "7"] and r.trace["ranking"] == ["7", "5"]
    assert r.trace["scores"] == [None, 0.5, 0.5, 0.8, 0.8]
    assert r.usage.scorer_calls == 4  # only the survivors were scored
    check_usage(r, 5)
    # top_k=1 keeps the most frequent answer only (the first seen of a tie)
    r = run("best-of-majority", answering(answers), 5, by_answer(table), alpha=0.3, top_k=1)
    assert r.answer == "5"
    # no answer is frequent enough: the most frequent ones survive
    r = run("best-of-majority", answering(answers), 5, by_answer(table), alpha=0.9)
    assert r.trace["survivors"] == ["5", "7"] and r.answer == "7"


def test_best_of_majority_invalid_config():
    with pytest.raises(ValueError, match="alpha"):
        create("best-of-majority", alpha=1.5)
    with pytest.raises(ValueError, match="top_k"):
        create("best-of-majority", top_k=-1)


# ---- early-stop-vote ---------------------------------------------------------------------


def test_early_stop_unanimous_window_stops_after_the_agreeing_window():
    eng = in_sequence(["41", "42", "42"] + ["42"] * 3 + ["40"] * 6)
    r = run("early-stop-vote", eng, 12, window=3)
    assert r.answer == "42"
    assert r.trace["samples_drawn"] == 6 and r.trace["stopped"] == "settled"
    assert [x["settled"] for x in r.trace["rounds"]] == [False, True]
    assert [q.n for q in eng.requests] == [3, 3]
    assert [q.params.seed for q in eng.requests] == [0, 1]  # every window its own seed
    check_usage(r, 6)


def test_early_stop_beta_rule_stops_where_the_posterior_passes():
    # window 2, unanimous answers: P = 7/8 after 2 samples, 31/32 > 0.95 after 4
    r = run("early-stop-vote", in_sequence(["42"] * 10), 10, window=2, rule="beta")
    assert r.trace["samples_drawn"] == 4
    assert [x["probability"] for x in r.trace["rounds"]] == [7 / 8, 31 / 32]
    # window 1: counts (1), (1,1), (2,1), (3,1), (4,1), (5,1) stay <= 0.9375; (6,1) 0.965
    seq = ["42", "7"] + ["42"] * 8
    r = run("early-stop-vote", in_sequence(seq), 10, window=1, rule="beta")
    assert r.trace["samples_drawn"] == 7 and r.answer == "42"
    assert r.trace["rounds"][-1]["probability"] == 247 / 256


def test_early_stop_dirichlet_rule():
    r = run("early-stop-vote", in_sequence(["42"] * 10), 10, window=2, rule="dirichlet")
    assert r.trace["samples_drawn"] == 4 and r.trace["rule"] == "dirichlet"


def test_early_stop_spends_the_budget_when_the_vote_never_settles():
    eng = in_sequence(["1", "2", "1", "2", "3"])
    r = run("early-stop-vote", eng, 5, window=2)
    assert r.trace["stopped"] == "budget" and r.trace["samples_drawn"] == 5
    assert [q.n for q in eng.requests] == [2, 2, 1]
    check_usage(r, 5)


def test_early_stop_invalid_config():
    with pytest.raises(ValueError, match="rule must be one of"):
        create("early-stop-vote", rule="entropy")
    with pytest.raises(ValueError, match="window"):
        create("early-stop-vote", window=0)
    with pytest.raises(ValueError, match="confidence"):
        create("early-stop-vote", confidence=1.0)


# ---- confidence-vote ---------------------------------------------------------------------

CONF = {"hmm": 2.0, "um": 4.0}  # token confidence of a word; every other word has 8


class TopLogprobEngine(ScriptedEngine):
    """A scripted engine that also reports top-k alternatives: every alternative of word
    ``w`` gets log-prob ``-CONF[w]``, so the word's token confidence is exactly ``CONF[w]``."""

    def __init__(self, script):
        super().__init__(script)
        self.batches = []  # the number of requests in each generate() call

    async def generate(self, requests):
        self.batches.append(len(requests))
        return await super().generate(requests)

    def _one(self, r):
        outs = super()._one(r)
        if not r.params.top_logprobs:
            return outs
        k = r.params.top_logprobs

        def tops(text):
            lps = []
            for w in text.split():
                c = CONF.get(w, 8.0)
                lps.append(TokenLogprob(w, -c, ((w, -c),) * k))
            return tuple(lps) or None

        return [replace(c, logprobs=tops(c.text)) for c in outs]


def continuing(texts):
    """A script that starts the k-th fresh trace as texts[k] and continues a partial trace
    with the rest of the text it started."""
    fresh = iter(texts)

    def script(prefix, i):
        partial = prefix[len(Q) :]
        if not partial:
            return next(fresh)
        full = next(t for t in texts if t.startswith(partial))
        return full[len(partial) :]

    return script


def test_confidence_vote_offline_drops_low_confidence_traces():
    texts = [
        "a0 b c The answer is 42",  # lowest group confidence 8
        "a1 b c The answer is 42",  # 8
        "a2 hmm hmm The answer is 7",  # 2
        "a3 hmm hmm The answer is 7",  # 2
        "a4 hmm b The answer is 7",  # 5
    ]
    eng = TopLogprobEngine(continuing(texts))
    r = run("confidence-vote", eng, 5, mode="offline", group_window=2, keep_percent=50)
    assert r.trace["confidences"] == pytest.approx([8, 8, 2, 2, 5])
    assert r.trace["threshold"] == 5.0 and r.trace["voters"] == [0, 1, 4]
    assert r.trace["vote_weights"] == pytest.approx({"42": 16.0, "7": 5.0})
    assert r.answer == "42"
    assert [c.votes for c in r.candidates] == [2, 2, 0, 0, 1]
    assert eng.requests[0].params.top_logprobs == 20 and eng.requests[0].n == 5
    check_usage(r, 5)
    assert run("self-consistency", TopLogprobEngine(continuing(texts)), 5).answer == "7"


def test_confidence_vote_online_stops_unconfident_traces_early():
    warm = [
        "w0 b c d The answer is 42",  # 8
        "w1 hmm c d The answer is 42",  # 5
        "w2 hmm hmm d The answer is 7",  # 2
        "w3 b hmm d The answer is 7",  # 5
    ]
    online = [
        "o0 b c d e f The answer is 42",
        "o1 hmm hmm d e f The answer is 7",  # falls below the threshold in its 1st chunk
        "o2 b c d e f The answer is 42",
        "o3 b c d e hmm hmm The answer is 7",  # ... in its 2nd chunk
    ]
    eng = TopLogprobEngine(continuing(warm + online))
    cfg = dict(warmup=4, keep_percent=50, group_window=2, chunk_tokens=4)
    r = run("confidence-vote", eng, 8, **cfg)
    assert r.trace["threshold"] == 5.0
    assert r.trace["status"] == ["complete"] * 5 + ["low-confidence", "complete", "low-confidence"]
    # chunks of 4 words, then 3 (the scripted engine counts the joining space as a word slot)
    assert [c.tokens for c in r.candidates[4:]] == [10, 4, 10, 7]
    assert r.candidates[5].answer is None and r.candidates[5].finish_reason == "pruned"
    assert r.trace["voters"] == [0, 1, 3, 4, 6]
    assert r.trace["vote_weights"] == pytest.approx({"42": 29.0, "7": 5.0})
    assert r.answer == "42"
    # one warm-up request, then one batch per round with every live trace
    assert eng.batches == [1, 4, 3, 2]
    assert eng.requests[0].n == 4
    round1 = eng.requests[1:5]
    assert len({q.params.seed for q in round1}) == 4 and all(q.partial == "" for q in round1)
    assert eng.requests[5].partial == "o0 b c d"
    check_usage(r, 8)


def test_confidence_vote_online_skips_sampling_once_the_vote_is_settled():
    warm = [f"w{i} b c The answer is 42" for i in range(4)]
    eng = TopLogprobEngine(continuing(warm))
    r = run("confidence-vote", eng, 8, warmup=4, group_window=2)
    assert len(eng.requests) == 1 and len(r.candidates) == 4
    assert r.trace["rounds"][-1]["stopped"] == "consensus"
    assert r.answer == "42"


def test_confidence_vote_online_stop_waits_for_a_full_window():
    # The threshold comes from whole-trace groups of 8 tokens: s = 7.25. The online trace's
    # first chunk "o um b c" has mean 7 < s, but its full windows never fall below 7.5: a
    # stop on the 4-token prefix would be the noisy partial-window stop DeepConf avoids.
    warm = [
        "w0 b c d e f g h The answer is 42",  # 8
        "w1 b c d e f g h The answer is 7",  # 8
        "w2 hmm hmm d e f g h The answer is 9",  # 6.5
        "w3 hmm hmm d e f g h The answer is 9",  # 6.5
    ]
    online = ["o um b c d e f g h i The answer is 42"]
    eng = TopLogprobEngine(continuing(warm + online))
    cfg = dict(warmup=4, keep_percent=50, group_window=8, chunk_tokens=4)
    r = run("confidence-vote", eng, 5, **cfg)
    assert r.trace["threshold"] == pytest.approx(7.25)
    assert r.trace["status"][4] == "complete" and 4 in r.trace["voters"]
    assert r.candidates[4].answer == "42"


def test_confidence_vote_default_group_window_fits_the_token_cap():
    # the paper's 2048-token groups exceed our 512-token cap: no trace would have a full
    # window, so online stopping could never fire
    cfg = create("confidence-vote").config
    assert cfg.group_window * 2 <= cfg.max_tokens


def test_confidence_vote_counts_the_sampled_token_outside_the_top_k():
    class Unlikely(TopLogprobEngine):
        """Every sampled token has log-prob -5, below its alternatives (-1, -3)."""

        def _one(self, r):
            outs = super()._one(r)
            lps = lambda c: tuple(  # noqa: E731
                TokenLogprob(t.token, -5.0, (("x", -1.0), ("y", -3.0))) for t in c.logprobs
            )
            return [replace(c, logprobs=lps(c)) for c in outs]

    eng = Unlikely(continuing(["a b The answer is 42"] * 2))
    r = run("confidence-vote", eng, 2, mode="offline", top_logprobs=2)
    assert r.trace["confidences"] == pytest.approx([3.0, 3.0])  # (1 + 3 + 5) / 3


def test_confidence_vote_online_launches_no_more_traces_once_the_vote_is_settled():
    # Warm-up: one confident 42 and one confident 7 vote (share 0.5). The first wave of 4
    # online traces all say 42 (share 40 / 48 >= 0.8): the other 8 are never launched.
    warm = [
        "w0 b c The answer is 42",
        "w1 b c The answer is 7",
        "w2 hmm hmm The answer is 9",
        "w3 hmm hmm The answer is 9",
    ]
    online = [f"o{k} b c The answer is 42" for k in range(12)]
    eng = TopLogprobEngine(continuing(warm + online))
    r = run("confidence-vote", eng, 16, warmup=4, keep_percent=50, consensus=0.8)
    assert eng.batches == [1, 4]
    assert len(r.candidates) == 8 and r.trace["status"][4:] == ["complete"] * 4
    last = r.trace["rounds"][-1]
    assert last["stopped"] == "consensus" and last["not_launched"] == 8
    assert last["share"] == pytest.approx(40 / 48)
    assert r.answer == "42"
    check_usage(r, 8)


def test_confidence_vote_refills_a_wave_as_traces_end():
    # wave=2: two traces in flight; a trace that ends frees its slot for the next one
    warm = ["w0 b The answer is 42", "w1 b The answer is 7"]
    online = ["o0 b The answer is 42", "o1 b c d e f g The answer is 7", "o2 b The answer is 5"]
    eng = TopLogprobEngine(continuing(warm + online))
    r = run("confidence-vote", eng, 5, warmup=2, keep_percent=100, chunk_tokens=4, wave=2)
    # o0 ends in round 2, so o2 starts in round 3 beside o1, which ends there
    launched = [x.get("launched") for x in r.trace["rounds"][1:]]
    assert launched == [2, 0, 1, 0]
    assert eng.batches == [1, 2, 2, 2, 1]
    assert r.trace["status"] == ["complete"] * 5


def test_confidence_vote_invalid_setups():
    with pytest.raises(ValueError, match="log-probabilities"):
        run("confidence-vote", answering(["1"], logprobs=False), 2)
    with pytest.raises(ValueError, match="top log-probabilities"):
        run("confidence-vote", answering(["1", "2"]), 2, mode="offline")
    with pytest.raises(ValueError, match="trace_confidence='lowest'"):
        create("confidence-vote", trace_confidence="tail")
    with pytest.raises(ValueError, match="mode must be one of"):
        create("confidence-vote", mode="batch")
    with pytest.raises(ValueError, match="wave must be >= 1"):
        create("confidence-vote", wave=0)
    create("confidence-vote", mode="offline", trace_confidence="bottom10")


# ---- end to end on the real small model ---------------------------------------------------

REAL = Problem.from_question("What is 2 plus 2? Answer with a number.")
says_four = scorer(lambda p, text: 1.0 if "4" in text else 0.0, name="says-four")
longer = scorer(lambda p, text: min(len(text) / 100, 1.0), name="length")


def real(name, engine, n, score=None, **config):
    r = run(name, engine, n, score, problem=REAL, max_tokens=24, **config)
    assert r.strategy == name
    assert r.usage.tokens_generated == sum(c.tokens for c in r.candidates) > 0
    assert all(c.tokens <= 24 for c in r.candidates)
    assert r.usage.engine_calls >= 1
    return r


def test_sample_on_the_real_model(engine):
    r = real("sample", engine, 3, longer, threshold=0.05)
    assert len(r.candidates) == 3 and r.usage.scorer_calls == 3
    assert r.trace["passed"] == [i for i, c in enumerate(r.candidates) if c.score >= 0.05]


def test_weighted_vote_on_the_real_model(engine):
    r = real("weighted-vote", engine, 3)
    assert len(r.trace["log_weights"]) == 3 and all(w < 0 for w in r.trace["log_weights"])
    if r.trace["clusters"]:
        assert sum(r.trace["cluster_weights"].values()) == pytest.approx(1.0)


def test_rpc_on_the_real_model(engine):
    r = real("rpc", engine, 4)
    assert all(0 < p <= 1 for p in r.trace["probabilities"])
    assert set(r.trace["pruned"]) <= set(range(4))


@pytest.mark.parametrize("name", ["best-of-n", "weighted-best-of-n"])
def test_best_of_n_on_the_real_model(engine, name):
    r = real(name, engine, 3, says_four)
    assert r.usage.scorer_calls == 3
    if name == "weighted-best-of-n" and all(c.answer is None for c in r.candidates):
        assert r.best is None  # no answer to weigh: nothing is chosen
        return
    assert r.best is not None and r.best.score == max(c.score for c in r.candidates)


def test_best_of_majority_on_the_real_model(engine):
    r = real("best-of-majority", engine, 4, says_four, alpha=0.25)
    assert r.usage.scorer_calls == sum(c.score is not None for c in r.candidates)


def test_early_stop_vote_on_the_real_model(engine):
    r = real("early-stop-vote", engine, 4, window=2, rule="beta")
    rounds = r.trace["rounds"]
    assert sum(x["samples"] for x in rounds) == r.trace["samples_drawn"] == len(r.candidates)
    assert r.trace["stopped"] in {"settled", "budget"}


def test_confidence_vote_on_the_real_model(engine):
    r = real(
        "confidence-vote",
        engine,
        4,
        warmup=2,
        chunk_tokens=8,
        group_window=4,
        top_logprobs=5,
        consensus=1.0,
    )
    assert r.trace["phase"][:2] == ["warmup", "warmup"]
    assert set(r.trace["status"]) <= {"complete", "low-confidence", "consensus"}
    assert all(c > 0 for c in r.trace["confidences"])

"""Tests for ponder.scoring.quality: AUROC, rates, the resampling ceiling, the report and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ponder.cli import main
from ponder.cli.report import format_report, load_records
from ponder.scoring.quality import (
    auroc,
    rates,
    resampling_accuracy,
    resampling_gain,
    resampling_limit,
    verifier_report,
)

# Scores of three correct and three incorrect candidates; one tie across the classes.
SCORES = [0.9, 0.8, 0.7, 0.3, 0.3, 0.1]
CORRECT = [True, False, True, True, False, False]


def test_auroc_hand_example_with_a_tie() -> None:
    # Pairs (correct, incorrect): 0.9 beats all 3; 0.7 beats 0.3 and 0.1, loses to 0.8;
    # 0.3 ties 0.3 (one half), beats 0.1, loses to 0.8. (3 + 2 + 1.5) / 9.
    assert auroc(SCORES, CORRECT) == pytest.approx(6.5 / 9, abs=1e-15)
    assert auroc([1, 2, 3], [False, True, True]) == 1.0
    assert auroc([1, 2, 3], [True, False, False]) == 0.0
    assert auroc([0.5] * 4, [True, False, True, False]) == 0.5
    assert auroc([0.1, 0.2], [True, True]) is None


def test_auroc_matches_the_pair_count_on_random_data() -> None:
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=60).astype(float)  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auroc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)), abs=1e-12)


def test_rates_at_a_threshold() -> None:
    # Accept >= 0.5: correct 0.9, 0.7 accepted, 0.3 rejected; incorrect 0.8 accepted.
    assert rates(SCORES, CORRECT, 0.5) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    assert rates(SCORES, CORRECT, 0.3) == (pytest.approx(2 / 3), 0.0)
    assert rates([0.4], [True], 0.5) == (None, 1.0)


def test_resampling_formula_exact_values() -> None:
    # p = 0.5, TPR = 2/3, FPR = 1/3: a = 1/2, c = 1/3, d = 1/6, r = 1/2.
    assert resampling_accuracy(1, 0.5, 1 / 3, 1 / 3) == pytest.approx(0.5)
    assert resampling_accuracy(2, 0.5, 1 / 3, 1 / 3) == pytest.approx(1 / 3 * 1.5 + 1 / 12)
    assert resampling_gain(1, 0.5, 1 / 3, 1 / 3) == pytest.approx(1 / 12)
    limit = resampling_limit(0.5, 1 / 3, 1 / 3, epsilon=0.01)
    assert limit["asymptote"] == pytest.approx(2 / 3)
    # gain(k) = (1/12) 2^-(k-1): 1/96 >= 0.01 at k = 4, 1/192 < 0.01 at k = 5.
    assert limit["k_stop"] == 5 and limit["helps"]
    # A perfect verifier: A(k) = 1 - (1 - p)^k, ceiling 1.
    for k in (1, 3, 10):
        assert resampling_accuracy(k, 0.2, 0.0, 0.0) == pytest.approx(1 - 0.8**k)
    assert resampling_limit(0.2, 0.0, 0.0)["asymptote"] == 1.0


def test_a_verifier_no_better_than_chance_never_helps() -> None:
    limit = resampling_limit(0.4, 0.5, 0.5)
    assert not limit["helps"] and limit["k_stop"] == 1
    assert limit["asymptote"] == pytest.approx(0.4)
    assert resampling_accuracy(50, 0.4, 0.5, 0.5) == pytest.approx(0.4)
    # Worse than chance: more draws make it worse.
    assert resampling_accuracy(10, 0.4, 0.6, 0.6) < 0.4
    # A verifier that accepts nothing: every run returns its last draw.
    assert resampling_accuracy(7, 0.3, 0.0, 1.0) == pytest.approx(0.3)
    assert resampling_limit(0.3, 0.0, 1.0)["asymptote"] == pytest.approx(0.3)


@pytest.mark.parametrize(("p", "fpr", "fnr"), [(0.3, 0.1, 0.2), (0.05, 0.02, 0.3), (0.7, 0.4, 0.1)])
def test_resampling_formula_against_simulation(p: float, fpr: float, fnr: float) -> None:
    rng = np.random.default_rng(1234)
    trials, k_max = 200_000, 12
    correct = rng.random((trials, k_max)) < p
    accept_prob = np.where(correct, 1 - fnr, fpr)
    accepted = rng.random((trials, k_max)) < accept_prob
    for k in (1, 2, 3, 5, 8, 12):
        acc = accepted[:, :k]
        first = np.where(acc.any(axis=1), acc.argmax(axis=1), k - 1)
        simulated = correct[np.arange(trials), first].mean()
        # 200k Bernoulli trials: the standard error is at most 0.0012; 0.005 is > 4 of them.
        assert simulated == pytest.approx(resampling_accuracy(k, p, fpr, fnr), abs=0.005), k


def test_per_problem_curve_averages_the_problems() -> None:
    ps = [0.9, 0.1]
    for k in (1, 4, 16):
        mean = (resampling_accuracy(k, 0.9, 0.2, 0.1) + resampling_accuracy(k, 0.1, 0.2, 0.1)) / 2
        assert resampling_accuracy(k, ps, 0.2, 0.1) == pytest.approx(mean)
    limit = resampling_limit(ps, 0.2, 0.1, epsilon=0.001)
    k = limit["k_stop"]
    assert resampling_gain(k, ps, 0.2, 0.1) < 0.001 <= resampling_gain(k - 1, ps, 0.2, 0.1)


def test_verifier_report_pooled_and_per_problem() -> None:
    records = [{"score": s, "correct": c} for s, c in zip(SCORES, CORRECT, strict=True)]
    report = verifier_report(records, threshold=0.5)
    assert report["n"] == 6 and report["n_correct"] == 3 and report["problems"] is None
    assert report["false_positive_rate"] == pytest.approx(1 / 3)
    assert report["false_negative_rate"] == pytest.approx(1 / 3)
    assert report["precision"] == pytest.approx(2 / 3) and report["accepted"] == 3
    assert report["auroc"] == pytest.approx(6.5 / 9)
    # TPR - FPR is 1/3 at 0.3, 0.7 and 0.9; the tie goes to the highest threshold.
    assert report["best_threshold"] == {"threshold": 0.9, "tpr": 1 / 3, "fpr": 0.0}
    res = report["resampling"]
    assert res["model"] == "pooled" and res["asymptote"] == pytest.approx(2 / 3)
    assert res["curve"][0] == {"k": 1, "accuracy": pytest.approx(0.5)}

    tagged = [dict(r, problem=f"q{i % 2}") for i, r in enumerate(records)]
    per = verifier_report(tagged, threshold=0.5)
    assert per["problems"] == 2 and per["resampling"]["model"] == "per-problem"
    # q0 holds candidates 0, 2, 4 (2 of 3 correct), q1 holds 1, 3, 5 (1 of 3).
    expected = resampling_accuracy(8, [2 / 3, 1 / 3], 1 / 3, 1 / 3)
    assert per["resampling"]["curve"][3] == {"k": 8, "accuracy": pytest.approx(expected)}
    text = format_report(per)
    assert "AUROC             0.722" in text and "over 2 problems" in text


def test_bad_records() -> None:
    with pytest.raises(ValueError, match="at least one"):
        verifier_report([])
    with pytest.raises(ValueError, match="record 1: 'score' must be a number"):
        verifier_report([{"score": 1, "correct": True}, {"score": "x", "correct": True}])
    with pytest.raises(ValueError, match="'correct' must be true or false"):
        verifier_report([{"score": 1, "correct": "yes"}])
    with pytest.raises(ValueError, match="finite"):
        verifier_report([{"score": float("nan"), "correct": True}])
    with pytest.raises(ValueError, match="every record names"):
        verifier_report([{"score": 1, "correct": True, "problem": "a"}, {"score": 0, "correct": 0}])


def test_cli_verifier_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "graded.jsonl"
    lines = [json.dumps({"score": s, "correct": c}) for s, c in zip(SCORES, CORRECT, strict=True)]
    path.write_text("\n".join(lines) + "\n\n")
    assert load_records(path)[0] == {"score": 0.9, "correct": True}
    assert main(["verifier-report", str(path), "--json", "--threshold", "0.3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["false_positive_rate"] == pytest.approx(2 / 3)
    assert report["false_negative_rate"] == 0.0
    assert main(["verifier-report", str(path)]) == 0
    assert "false positives   0.333" in capsys.readouterr().out
    path.write_text('{"score": 1, "correct": true}\nnot json\n')
    assert main(["verifier-report", str(path)]) == 2
    assert "graded.jsonl:2: not JSON" in capsys.readouterr().err

"""Answer-equivalence checkers measured on the committed answer pairs.

``python -m ponder.benchmarks.answer_checkers`` reads ``tests/data/answer_pairs.jsonl`` (one
``{"category", "reference", "answer", "equivalent"}`` per line, the verdict written by hand)
and prints, for each checker, how many verdicts it matches, its false positives (says equal,
is not) and false negatives, and the mean and worst seconds per pair; then the agreement per
category. The checkers:

* ``ponder rules``: ``ponder_equivalent(answer, reference)``, ponder's own rules;
* ``math-verify``: Hugging Face's ``verify(parse(reference), parse(answer))``, each answer
  given as inline math (``$...$``) unless it already holds ``$`` or ``\\boxed`` (a bare
  ``\\frac{1}{2}`` is not found otherwise), with its default timeouts;
* ``math-verify (raw)``: the same without the ``$...$`` wrapping;
* ``answers_equivalent``: what ponder grades with: its own rules, then math-verify for
  the pairs they call different unless both are plain numbers or plain words.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ponder.scoring.answers import answers_equivalent, ponder_equivalent

PAIRS = Path(__file__).resolve().parents[2] / "tests" / "data" / "answer_pairs.jsonl"

Checker = Callable[[str, str], bool]


@dataclass(frozen=True)
class Pair:
    category: str
    reference: str
    answer: str
    equivalent: bool


@dataclass(frozen=True)
class Measured:
    """One checker's verdicts on every pair, and the seconds each took."""

    name: str
    verdicts: tuple[bool, ...]
    seconds: tuple[float, ...]

    def agreement(self, pairs: list[Pair]) -> int:
        return sum(v == p.equivalent for v, p in zip(self.verdicts, pairs, strict=True))


def load_pairs(path: Path = PAIRS) -> list[Pair]:
    """The answer pairs in ``path``; ValueError naming the line of a malformed one."""
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(
                Pair(row["category"], row["reference"], row["answer"], bool(row["equivalent"]))
            )
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}:{number}: not an answer pair ({exc})") from None
    return pairs


def ponder_rules(reference: str, answer: str) -> bool:
    return ponder_equivalent(answer, reference)


def ponder_grading(reference: str, answer: str) -> bool:
    return answers_equivalent(answer, reference)


def _as_math(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def math_verify_checker(wrap: bool = True) -> Checker:
    """math-verify's verdict; ``wrap``: give each answer as ``$...$`` inline math."""
    from math_verify import parse, verify  # type: ignore[import-untyped]

    def check(reference: str, answer: str) -> bool:
        gold = parse(_as_math(reference) if wrap else reference)
        target = parse(_as_math(answer) if wrap else answer)
        return bool(gold) and bool(target) and bool(verify(gold, target))

    return check


def measure(name: str, checker: Checker, pairs: list[Pair]) -> Measured:
    checker("\\{1, 2\\}", "\\{2, 1\\}")  # imports, caches and worker start-up untimed
    verdicts, seconds = [], []
    for pair in pairs:
        started = time.perf_counter()
        verdicts.append(bool(checker(pair.reference, pair.answer)))
        seconds.append(time.perf_counter() - started)
    return Measured(name, tuple(verdicts), tuple(seconds))


def checkers() -> dict[str, Checker]:
    return {
        "ponder rules": ponder_rules,
        "math-verify": math_verify_checker(),
        "math-verify (raw)": math_verify_checker(wrap=False),
        "answers_equivalent": ponder_grading,
    }


def table(pairs: list[Pair], results: list[Measured]) -> str:
    """The summary table and the per-category agreement, as Markdown."""
    lines = [
        "| checker | agrees | false equal | false different | mean ms/pair | worst ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        fp = sum(v and not p.equivalent for v, p in zip(r.verdicts, pairs, strict=True))
        fn = sum(p.equivalent and not v for v, p in zip(r.verdicts, pairs, strict=True))
        agree = r.agreement(pairs)
        mean = 1000 * sum(r.seconds) / len(r.seconds)
        lines.append(
            f"| {r.name} | {agree}/{len(pairs)} ({100 * agree / len(pairs):.1f}%) | {fp} | "
            f"{fn} | {mean:.2f} | {1000 * max(r.seconds):.0f} |"
        )
    categories = list(dict.fromkeys(p.category for p in pairs))
    lines += ["", "| category | pairs | " + " | ".join(r.name for r in results) + " |"]
    lines.append("|---|---|" + "---|" * len(results))
    for category in categories:
        index = [i for i, p in enumerate(pairs) if p.category == category]
        cells = [str(sum(r.verdicts[i] == pairs[i].equivalent for i in index)) for r in results]
        lines.append(f"| {category} | {len(index)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def disagreements(pairs: list[Pair], result: Measured) -> list[str]:
    """The pairs ``result`` gets wrong, one line each."""
    return [
        f"  {p.category}: {p.reference!r} vs {p.answer!r}: verdict {p.equivalent}, said {v}"
        for p, v in zip(pairs, result.verdicts, strict=True)
        if v != p.equivalent
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=Path, default=PAIRS, help="answer pairs (JSONL)")
    parser.add_argument("--wrong", action="store_true", help="list each checker's misses")
    args = parser.parse_args(argv)
    pairs = load_pairs(args.pairs)
    results = [measure(name, checker, pairs) for name, checker in checkers().items()]
    print(table(pairs, results))
    if args.wrong:
        for r in results:
            print(f"\n{r.name} misses:")
            print("\n".join(disagreements(pairs, r)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

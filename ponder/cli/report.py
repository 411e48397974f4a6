"""``ponder report DB`` and ``ponder verifier-report FILE``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    r = sub.add_parser("report", help="tables, JSON or an HTML page from a results database")
    r.add_argument("db", help="results database written by `ponder eval TASK`")
    r.add_argument("-o", "--output", default="", help="write a self-contained HTML page here")
    r.add_argument("--json", action="store_true", help="metrics as JSON")
    r.set_defaults(func=_report)

    vr = sub.add_parser(
        "verifier-report",
        help="false positives/negatives, AUROC and the resampling ceiling of a verifier",
    )
    vr.add_argument("file", help='JSONL lines {"score": float, "correct": bool, "problem": id?}')
    vr.add_argument("--threshold", type=float, default=0.5, help="accept when score >= this")
    vr.add_argument(
        "--epsilon", type=float, default=0.01, help="a draw gaining less than this stops helping"
    )
    vr.add_argument("--json", action="store_true", help="machine-readable output")
    vr.set_defaults(func=_verifier_report)


def _report(args: argparse.Namespace) -> int:
    from ponder.evals.report import html_report, json_report, text_report
    from ponder.evals.store import Store

    path = Path(args.db)
    if not path.is_file():
        raise ValueError(f"no results database at {path}; create one with `ponder eval TASK`")
    with Store(path) as store:
        if args.output:
            Path(args.output).write_text(html_report(store), encoding="utf-8")
            print(f"wrote {args.output}")
        if args.json:
            print(json.dumps(json_report(store), indent=2))
        elif not args.output:
            print(text_report(store), end="")
    return 0


def _verifier_report(args: argparse.Namespace) -> int:
    from ponder.scoring.quality import verifier_report

    try:
        records = load_records(args.file)
    except OSError as exc:
        raise ValueError(f"cannot read {args.file}: {exc.strerror}") from None
    report = verifier_report(records, threshold=args.threshold, epsilon=args.epsilon)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of ``{"score": float, "correct": bool, "problem": id?}`` lines."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(item, dict):
                raise ValueError(f"{path}:{number}: expected an object, got {item!r}")
            out.append(item)
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a short human-readable table."""
    res = report["resampling"]
    problems = f" over {report['problems']} problems" if report["problems"] else ""
    lines = [
        f"candidates        {report['n']} ({report['n_correct']} correct){problems}",
        f"base accuracy     {_fmt(report['base_accuracy'])}",
        f"threshold         {report['threshold']:g} ({report['accepted']} accepted)",
        f"false positives   {_fmt(report['false_positive_rate'])} of incorrect accepted",
        f"false negatives   {_fmt(report['false_negative_rate'])} of correct rejected",
        f"precision         {_fmt(report['precision'])}",
        f"AUROC             {_fmt(report['auroc'])}",
    ]
    best = report["best_threshold"]
    if best is not None:
        lines.append(
            f"best threshold    {best['threshold']:g} "
            f"(TPR {best['tpr']:.3f}, FPR {best['fpr']:.3f})"
        )
    lines.append(f"resample until accepted, at most k draws ({res['model']} accuracy):")
    lines.append("    k  accuracy")
    for point in res["curve"]:
        lines.append(f"{point['k']:5d}  {point['accuracy']:.4f}")
    if res["helps"]:
        lines.append(
            f"more draws stop helping at k = {res['k_stop']} (next draw gains < "
            f"{res['epsilon']:g}); accuracy there {res['accuracy_at_k_stop']:.4f}, "
            f"ceiling {res['asymptote']:.4f}"
        )
    else:
        lines.append(
            "resampling does not help: the verifier accepts wrong answers as often as right ones"
        )
    return "\n".join(lines)

"""The math-verify worker process: ``python -m ponder.scoring._mathverify_worker``.

Reads one JSON ``[answer, reference]`` per line on stdin and writes ``true`` or ``false``
per line on stdout (after a first ``"ready"`` line). math-verify evaluates exactly, so a
hostile answer (``2^{2^{2^{2^{10}}}}``, ``100000!``) can hold the interpreter for as long as
it likes; in its own process it can be killed (``ponder.scoring.mathverify`` does).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_CACHE_SIZE = 4096


def _as_math(text: str) -> str:
    """Inline math unless the text already holds ``$`` or ``\\boxed`` (math-verify finds a
    bare ``\\frac{1}{2}`` only inside math delimiters)."""
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def main() -> None:
    logging.disable(logging.WARNING)  # math-verify's notice that its own timeout is off
    from math_verify import parse, verify  # type: ignore[import-untyped]

    parsed: dict[str, Any] = {}

    def read(text: str) -> Any:
        if text not in parsed:
            if len(parsed) >= _CACHE_SIZE:
                parsed.clear()
            parsed[text] = parse(_as_math(text), parsing_timeout=None)
        return parsed[text]

    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        try:
            answer, reference = json.loads(line)
            gold, target = read(reference), read(answer)
            verdict = (
                bool(gold) and bool(target) and bool(verify(gold, target, timeout_seconds=None))
            )
        except Exception:  # whatever the text does to the parser, the verdict is "different"
            verdict = False
        print(json.dumps(verdict), flush=True)


if __name__ == "__main__":
    main()

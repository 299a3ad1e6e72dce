"""lwt.stats: intervals and paired tests against textbook answers."""

import random

import pytest
import torch

from lwt import stats


def test_wilson_matches_newcombe_1998():
    # Newcombe, Statistics in Medicine 17 (1998), Table I, method 3 (Wilson)
    assert stats.wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert stats.wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert stats.wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert stats.wilson_interval(1, 29) == pytest.approx((0.0061, 0.1718), abs=1e-4)
    with pytest.raises(ValueError, match="correct"):
        stats.wilson_interval(5, 0)


def test_wilson_covers_the_truth_about_95_percent_of_the_time():
    rng = random.Random(0)
    hits = 0
    for _ in range(2000):
        k = sum(rng.random() < 0.9 for _ in range(200))
        lo, hi = stats.wilson_interval(k, 200)
        hits += lo <= 0.9 <= hi
    assert 0.93 <= hits / 2000 <= 0.97


def test_mcnemar_by_hand():
    # 1 image right only by A, 9 only by B: P(X <= 1 | m = 10) = 11/1024, p = 22/1024
    a = torch.tensor([1] * 50 + [1] + [0] * 9 + [0] * 5, dtype=torch.bool)
    b = torch.tensor([1] * 50 + [0] + [1] * 9 + [0] * 5, dtype=torch.bool)
    r = stats.mcnemar(a, b)
    assert (r.a_only, r.b_only, r.n) == (1, 9, 65)
    assert r.p_value == pytest.approx(22 / 1024)
    assert stats.mcnemar(a, a).p_value == 1.0
    with pytest.raises(ValueError, match="1-D"):
        stats.mcnemar(a, b[:-1])


def test_speedup_interval_excludes_one_only_for_a_real_difference():
    rng = random.Random(1)
    rounds, per = 6, 5
    drift = [1 + 0.3 * rng.random() for _ in range(rounds)]  # a shared machine
    base = [10 * drift[r] * (1 + 0.05 * rng.random()) for r in range(rounds)
            for _ in range(per)]  # fmt: skip
    fast = [5 * drift[r] * (1 + 0.05 * rng.random()) for r in range(rounds)
            for _ in range(per)]  # fmt: skip
    same = [10 * drift[r] * (1 + 0.05 * rng.random()) for r in range(rounds)
            for _ in range(per)]  # fmt: skip
    s = stats.speedup(base, fast, rounds=rounds)
    assert s.low <= 2.0 <= s.high * 1.05 and s.low > 1 and s.verdict == "faster"
    t = stats.speedup(base, same, rounds=rounds)
    assert t.low < 1 < t.high and t.verdict == "no measurable difference"
    with pytest.raises(ValueError, match="rounds"):
        stats.speedup(base, fast, rounds=1)
    with pytest.raises(ValueError, match="split"):
        stats.speedup(base[:-1], fast, rounds=rounds)


def test_paired_difference_by_hand():
    a = torch.tensor([1, 1, 1, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 1], dtype=torch.bool)
    mean, lo, hi = stats.paired_difference(a, b)
    # d = (0, 1, 0, -1): mean 0, sd sqrt(2/3), half-width 1.96 * sd / 2
    assert mean == 0 and hi == pytest.approx(1.96 * (2 / 3) ** 0.5 / 2) and lo == -hi


def test_target_verdict_reads_the_interval_against_the_limit():
    v = stats.target_verdict
    # accuracy lost, target <= 1.0 pt (notebook 08's cases)
    assert v(0.0026, -0.0002, 0.0054, at_most=0.01) == "reached"
    assert v(0.0063, 0.0025, 0.0101, at_most=0.01) == "reached within noise"
    assert v(0.0131, 0.0079, 0.0183, at_most=0.01) == "missed within noise"
    assert v(0.03, 0.02, 0.04, at_most=0.01) == "not reached"
    # speed-up, target >= 1.3x
    assert v(1.39, 1.38, 1.40, at_least=1.3) == "reached"
    assert v(1.30, 1.27, 1.31, at_least=1.3) == "reached within noise"
    assert v(1.12, 1.11, 1.14, at_least=1.3) == "not reached"
    with pytest.raises(ValueError, match="exactly one"):
        v(1.0, 0.9, 1.1)

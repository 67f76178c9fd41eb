"""Coverage of the quality report's intervals, over many simulated seeds with known
ground truth (tests/quality_sim.py).

Coverage is a property of the estimator, and every simulation is deterministic (seeded
draws, a hashed audit sample, a seeded Monte Carlo), so it is measured here once, on
SQLite. PostgreSQL computes the same aggregates: tests/test_quality.py runs the same
simulations on both databases and requires the same report from each.
"""

import shutil

import pytest

from reviewqueue import quality, store

from .quality_sim import auto_accepted_truth, simulate, true_error


@pytest.fixture
def engine(sqlite_template, tmp_path, monkeypatch):
    path = tmp_path / "coverage.db"
    shutil.copy(sqlite_template, path)
    monkeypatch.setenv("REVIEWQUEUE_COUNTS_MAX_AGE", "0")
    engine = store.make_engine(f"sqlite:///{path}")
    yield engine
    store.dispose(engine)


def test_auto_accepted_error_interval_covers_the_truth(engine):
    """The true error of the traffic that went out unreviewed lies inside the 95%
    interval in at least 90% of 100 seeds (an over-confident model, 15% audits)."""
    seeds = 100
    inside = 0
    misses = []
    for seed in range(seeds):
        name = f"cov{seed}"
        truth = simulate(engine, name, seed, n=400, kind="over", low=0.78, audit_rate=0.15)
        got = quality.report(name, engine=engine).auto_accepted_error
        true = auto_accepted_truth(engine, name, truth)
        assert got.estimate is not None, got.reason
        if got.low <= true <= got.high:
            inside += 1
        else:
            misses.append((seed, round(true, 3), round(got.low, 3), round(got.high, 3)))
    assert inside >= 0.9 * seeds, misses


@pytest.mark.parametrize("kind", ["calibrated", "over", "under"])
def test_error_at_each_threshold_is_covered(engine, kind):
    """For each calibration shape: the true error at or above 0.70, 0.80 and 0.90 is at
    most the upper bound the advisor uses, in at least 90% of cases over 20 seeds."""
    seeds, hits, total = 20, 0, 0
    for seed in range(seeds):
        name = f"{kind}{seed}"
        truth = simulate(engine, name, 1000 + seed, n=400, kind=kind, low=0.65, audit_rate=0.2)
        rows = {r.threshold: r for r in quality.report(name, engine=engine).thresholds}
        for t in (0.7, 0.8, 0.9):
            row = rows[t]
            if row.expected_error is None:
                continue
            total += 1
            hits += true_error(truth, lambda c, t=t: c >= t) <= row.error_upper
    assert total >= 0.8 * 3 * seeds
    assert hits >= 0.9 * total


def test_the_recommended_threshold_meets_the_target(engine):
    """Where the advisor recommends a threshold, the true error of everything at or above
    it meets the target in at least 90% of seeds, and it recommends one in most seeds."""
    seeds, target = 40, 0.15
    recommended = met = 0
    for seed in range(seeds):
        name = f"rec{seed}"
        truth = simulate(engine, name, 2000 + seed, n=500, kind="calibrated", low=0.6, audit_rate=0.4)
        rep = quality.report(name, target_error=target, engine=engine)
        if rep.recommendation is None:
            assert rep.recommendation_reason
            continue
        recommended += 1
        t = rep.recommendation.threshold
        met += true_error(truth, lambda c, t=t: c >= t) <= target
    assert recommended >= 0.6 * seeds
    assert met >= 0.9 * recommended

"""Tests for the capacity-planning models and the plans built from observed rates.

The formulas are checked against exact rational arithmetic and published closed forms,
then against a discrete-event simulation; the observed inputs against workloads driven
through the public write API on a fake clock, whose true rates are known.
"""

from __future__ import annotations

import heapq
import math
import random
import sqlite3
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import qanalytics as qa
from qanalytics import capacity as cap

DAY = 86400.0
HOUR = 3600.0
MIDNIGHT = 1_699_920_000.0  # 2023-11-14 00:00:00 UTC
SAMPLE_DB = Path(__file__).resolve().parent.parent / "data" / "sample.db"


# -- exact reference values ---------------------------------------------------------------
def exact_erlang_c(c: int, a: Fraction) -> Fraction:
    """Erlang C straight from its textbook definition, in exact rational arithmetic.

    ``C = (a^c / c! * c / (c - a)) / (sum_{k<c} a^k / k! + a^c / c! * c / (c - a))``:
    no rounding anywhere, so it is an independent reference for the float recurrence.
    """
    tail = a**c / math.factorial(c) * Fraction(c) / (c - a)
    head = sum((a**k / math.factorial(k) for k in range(c)), Fraction(0))
    return tail / (head + tail)


# (servers, offered load in Erlangs, where the case comes from)
EXACT_CASES = [
    # Wolfram Language documentation, ErlangC "Basic Examples": ErlangC[3, 2] = 4/9.
    (3, Fraction(2), "ErlangC[3, 2] = 4/9 (Wolfram ErlangC reference page)"),
    # The classic call-centre worked example: 360 calls per half hour, 4-minute calls,
    # 55 agents, so a = 360 * 4 / 30 = 48 Erlangs. Value derived here exactly.
    (55, Fraction(48), "360 calls/30 min, 4 min AHT, 55 agents (derived exactly)"),
    (1, Fraction(1, 2), "M/M/1 at rho 0.5 (derived exactly)"),
    (10, Fraction(8), "c=10, a=8 (derived exactly)"),
    (20, Fraction(37, 2), "c=20, a=18.5 (derived exactly)"),
    (500, Fraction(450), "c=500, a=450 (derived exactly; factorials as Python ints)"),
    (500, Fraction(499), "c=500, a=499, nearly saturated (derived exactly)"),
]


@pytest.mark.parametrize(("servers", "load", "source"), EXACT_CASES)
def test_erlang_c_matches_exact_rational_values(servers: int, load: Fraction, source: str) -> None:
    expected = float(exact_erlang_c(servers, load))
    got = cap.erlang_c(float(load), 1.0, servers)
    assert got == pytest.approx(expected, rel=1e-9), source
    # Rates, not just their ratio, are what the API takes: scale both.
    assert cap.erlang_c(float(load) * 0.25, 0.25, servers) == pytest.approx(expected, rel=1e-9)


def test_erlang_c_published_value_4_over_9() -> None:
    # ErlangC[3, 2] = 4/9 = 0.4444..., the Wolfram Language reference page's first example.
    assert round(cap.erlang_c(2.0, 1.0, 3), 4) == 0.4444


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99])
def test_closed_forms_for_one_and_two_servers(rho: float) -> None:
    # Gross, Shortle, Thompson & Harris, Fundamentals of Queueing Theory (4th ed.),
    # M/M/1: P(wait) = rho, Wq = rho / (mu - lambda); M/M/2: P(wait) = 2 rho^2 / (1 + rho).
    mu = 2.0
    assert cap.erlang_c(rho * mu, mu, 1) == pytest.approx(rho, rel=1e-12)
    assert cap.mean_wait(rho * mu, mu, 1) == pytest.approx(rho / (mu - rho * mu), rel=1e-12)
    assert cap.erlang_c(2 * rho * mu, mu, 2) == pytest.approx(2 * rho**2 / (1 + rho), rel=1e-12)
    # M/M/1 waiting-time tail: P(W > t) = rho * exp(-(mu - lambda) t).
    t = 1.7
    expected = rho * math.exp(-(mu - rho * mu) * t)
    assert cap.wait_exceeds(t, rho * mu, mu, 1) == pytest.approx(expected, rel=1e-12)


def test_erlang_b_matches_exact_and_bounds_erlang_c() -> None:
    a, c = Fraction(8), 10
    exact_b = a**c / math.factorial(c) / sum(a**k / math.factorial(k) for k in range(c + 1))
    assert cap.erlang_b(8.0, 1.0, 10) == pytest.approx(float(exact_b), rel=1e-12)
    assert cap.erlang_b(8.0, 1.0, 10) < cap.erlang_c(8.0, 1.0, 10)


@pytest.mark.parametrize(("servers", "load"), [(500, 450.0), (2000, 1950.0), (5000, 4800.0)])
def test_large_server_counts_are_finite_and_sane(servers: int, load: float) -> None:
    pw = cap.erlang_c(load, 1.0, servers)
    wq = cap.mean_wait(load, 1.0, servers)
    assert 0.0 < pw < 1.0
    assert math.isfinite(wq) and 0.0 < wq < 1.0
    # One server fewer waits more; far more servers waits almost never.
    assert cap.erlang_c(load, 1.0, servers - 1) > pw
    assert cap.erlang_c(load, 1.0, servers * 2) < 1e-12


def test_servers_needed_scales_to_thousands() -> None:
    c = cap.servers_needed(10_000.0, 1.0, target_wait="1s", percentile=0.95)
    assert 10_000 < c < 10_500
    assert cap.wait_percentile(0.95, 10_000.0, 1.0, c) <= 1.0
    assert cap.wait_percentile(0.95, 10_000.0, 1.0, c - 1) > 1.0


# -- unstable systems and validation ----------------------------------------------------
@pytest.mark.parametrize(("lam", "servers"), [(3.0, 3), (10.0, 3), (3.0000001, 3)])
def test_unstable_system_is_reported_not_a_huge_number(lam: float, servers: int) -> None:
    assert cap.erlang_c(lam, 1.0, servers) == 1.0
    assert cap.mean_wait(lam, 1.0, servers) == math.inf
    assert cap.mean_wait_gg(lam, 1.0, servers, ca2=0.5, cs2=2.0) == math.inf
    assert cap.wait_exceeds(1000.0, lam, 1.0, servers) == 1.0
    assert cap.wait_percentile(0.5, lam, 1.0, servers) == math.inf
    assert cap.wait_percentile_gg(0.5, lam, 1.0, servers, cs2=3.0) == math.inf


def test_no_arrivals_means_no_wait() -> None:
    assert cap.erlang_c(0.0, 1.0, 1) == 0.0
    assert cap.mean_wait(0.0, 1.0, 1) == 0.0
    assert cap.wait_exceeds(0.0, 0.0, 1.0, 1) == 0.0
    assert cap.servers_needed(0.0, 1.0, target_wait="30s") == 0


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: cap.erlang_c(-1.0, 1.0, 2), "arrival_rate=-1.0"),
        (lambda: cap.erlang_c(float("nan"), 1.0, 2), "arrival_rate=nan"),
        (lambda: cap.erlang_c(1.0, 0.0, 2), "service_rate=0.0"),
        (lambda: cap.erlang_c(1.0, float("nan"), 2), "service_rate=nan"),
        (lambda: cap.erlang_c(1.0, 1.0, 0), "servers=0"),
        (lambda: cap.erlang_c(1.0, 1.0, 2.5), "servers=2.5"),
        (lambda: cap.mean_wait(1.0, 1.0, -3), "servers=-3"),
        (lambda: cap.wait_percentile(1.0, 1.0, 2.0, 2), "percentile=1.0"),
        (lambda: cap.wait_percentile(0.0, 1.0, 2.0, 2), "percentile=0.0"),
        (lambda: cap.wait_percentile_gg(float("nan"), 1.0, 2.0, 2), "percentile=nan"),
        (lambda: cap.wait_exceeds(-1.0, 1.0, 2.0, 2), "t=-1.0"),
        (lambda: cap.mean_wait_gg(1.0, 2.0, 2, cs2=-0.5), "cs2=-0.5"),
        (lambda: cap.mean_wait_gg(1.0, 2.0, 2, ca2=float("nan")), "ca2=nan"),
        (lambda: cap.servers_needed(1.0, 2.0, target_wait=-1.0), "target_wait=-1.0"),
        (lambda: cap.servers_needed(1.0, 2.0, target_wait=0), "target_wait=0"),
        (lambda: cap.servers_needed(1.0, 2.0, target_wait=1, percentile=1.5), "percentile=1.5"),
        (lambda: cap.what_if(1.0, 2.0, [0, 1]), "servers=0"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(
    call: Callable[[], object], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.").replace("-", r"\-")):
        call()


def test_wrong_types_raise_type_error() -> None:
    with pytest.raises(TypeError, match="servers"):
        cap.erlang_c(1.0, 1.0, "3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="arrival_rate"):
        cap.erlang_c(True, 1.0, 3)


# -- relations between the formulas ------------------------------------------------------
@pytest.mark.parametrize(("lam", "mu", "c"), [(2.0, 1.0, 3), (7.5, 0.5, 20), (0.9, 1.0, 1)])
def test_formulas_are_consistent(lam: float, mu: float, c: int) -> None:
    pw = cap.erlang_c(lam, mu, c)
    assert cap.wait_exceeds(0.0, lam, mu, c) == pytest.approx(pw)
    assert cap.wait_exceeds("0s", lam, mu, c) == pytest.approx(pw)
    for p in (0.5, 0.9, 0.99):
        t = cap.wait_percentile(p, lam, mu, c)
        if t > 0:
            assert cap.wait_exceeds(t, lam, mu, c) == pytest.approx(1 - p)
        else:
            assert pw <= 1 - p
    # Allen-Cunneen is M/M/c at ca2 = cs2 = 1 and scales with (ca2 + cs2) / 2.
    assert cap.mean_wait_gg(lam, mu, c) == pytest.approx(cap.mean_wait(lam, mu, c))
    assert cap.mean_wait_gg(lam, mu, c, ca2=1.0, cs2=3.0) == pytest.approx(
        2 * cap.mean_wait(lam, mu, c)
    )
    assert cap.wait_percentile_gg(0.99, lam, mu, c, ca2=0.0, cs2=4.0) == pytest.approx(
        2 * cap.wait_percentile(0.99, lam, mu, c)
    )
    # The exponential conditional wait integrates back to the mean: E[W] = int P(W > t).
    ts = np.linspace(0, 60 * cap.mean_wait_gg(lam, mu, c, cs2=2.5) + 1, 200_001)
    tail = [cap.wait_exceeds_gg(float(t), lam, mu, c, cs2=2.5) for t in ts[::1000]]
    area = float(np.trapezoid(np.interp(ts, ts[::1000], tail), ts))
    assert area == pytest.approx(cap.mean_wait_gg(lam, mu, c, cs2=2.5), rel=0.02)


@pytest.mark.parametrize("percentile", [None, 0.8, 0.95, 0.999])
@pytest.mark.parametrize("target", [0.05, 1.0, "30s"])
def test_servers_needed_is_the_smallest_meeting_the_target(
    percentile: float | None, target: float | str
) -> None:
    lam, mu = 40.0, 0.5  # 80 Erlangs
    seconds = qa.parse_duration(target)
    c = cap.servers_needed(lam, mu, target_wait=target, percentile=percentile, cs2=1.8)

    def wait(n: int) -> float:
        if percentile is None:
            return cap.mean_wait_gg(lam, mu, n, cs2=1.8)
        return cap.wait_percentile_gg(percentile, lam, mu, n, cs2=1.8)

    assert c > lam / mu
    assert wait(c) <= seconds
    assert wait(c - 1) > seconds


def test_servers_needed_percentile_zero_target_means_rarely_wait() -> None:
    c = cap.servers_needed(2.0, 1.0, target_wait=0, percentile=0.9)
    assert cap.erlang_c(2.0, 1.0, c) <= 0.1 < cap.erlang_c(2.0, 1.0, c - 1)


def test_what_if_curve() -> None:
    frame = cap.what_if(2.0, 1.0, range(1, 9), percentile=0.9)
    assert frame.columns.tolist() == [
        "servers",
        "utilization",
        "stable",
        "prob_wait",
        "mean_wait_s",
        "percentile_wait_s",
        "percentile",
    ]
    assert frame["servers"].dtype == "int64" and frame["stable"].dtype == bool
    assert frame["servers"].tolist() == list(range(1, 9))
    assert frame["stable"].tolist() == [False, False] + [True] * 6
    assert (frame.loc[~frame["stable"], "mean_wait_s"] == math.inf).all()
    assert (frame.loc[~frame["stable"], "prob_wait"] == 1.0).all()
    stable = frame[frame["stable"]]
    assert stable["mean_wait_s"].is_monotonic_decreasing
    assert stable["prob_wait"].is_monotonic_decreasing
    assert stable.iloc[0]["prob_wait"] == pytest.approx(4 / 9)
    default = cap.what_if(2.0, 1.0)
    assert default["servers"].iloc[0] == 2 and default["prob_wait"].iloc[-1] < 0.01


# -- discrete-event simulation -----------------------------------------------------------
def simulate_fifo(
    arrival_rate: float,
    servers: int,
    service: Callable[[random.Random], float],
    *,
    customers: int,
    seed: int,
    warmup: int = 5_000,
) -> tuple[float, float, float]:
    """A first-come-first-served G/G/c queue: (P(wait), mean wait, 90th percentile wait).

    Each arrival takes the server that frees first (a heap of free times), which is
    exactly FIFO with identical servers. Poisson arrivals.
    """
    rng = random.Random(seed)
    free = [0.0] * servers
    t = 0.0
    waits: list[float] = []
    for i in range(customers + warmup):
        t += rng.expovariate(arrival_rate)
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service(rng))
        if i >= warmup:
            waits.append(start - t)
    waits.sort()
    return (
        sum(w > 0 for w in waits) / customers,
        sum(waits) / customers,
        waits[int(0.9 * customers)],
    )


def test_mmc_simulation_agrees_with_erlang_c() -> None:
    lam, mu, c = 2.0, 1.0, 3
    pw, wq, p90 = simulate_fifo(lam, c, lambda r: r.expovariate(mu), customers=200_000, seed=1)
    # Tolerance: 200k customers at utilisation 0.67 give a standard error of about 0.5 %
    # on P(wait) and about 1.5 % on the mean wait; allow three to four of those.
    assert pw == pytest.approx(cap.erlang_c(lam, mu, c), abs=0.015)
    assert wq == pytest.approx(cap.mean_wait(lam, mu, c), rel=0.05)
    assert p90 == pytest.approx(cap.wait_percentile(0.9, lam, mu, c), rel=0.05)


def test_ggc_lognormal_simulation_agrees_with_allen_cunneen() -> None:
    lam, c, cs2 = 3.2, 4, 2.0  # utilisation 0.8, run times with variance twice exponential's
    sigma = math.sqrt(math.log(1 + cs2))  # lognormal with mean 1 and squared CV cs2
    pw, wq, p90 = simulate_fifo(
        lam, c, lambda r: r.lognormvariate(-sigma * sigma / 2, sigma), customers=200_000, seed=2
    )
    # Tolerance: Allen-Cunneen is itself an approximation (typically within 10 %) and the
    # heavy lognormal tail makes the simulated mean noisier (about 5 % between seeds), so
    # 15 % on the mean and the 90th percentile; P(wait) within 0.03 of Erlang C.
    assert pw == pytest.approx(cap.erlang_c(lam, 1.0, c), abs=0.03)
    assert wq == pytest.approx(cap.mean_wait_gg(lam, 1.0, c, cs2=cs2), rel=0.15)
    assert p90 == pytest.approx(cap.wait_percentile_gg(0.9, lam, 1.0, c, cs2=cs2), rel=0.15)
    # And the M/M/c formula, blind to the variability, would be far off.
    assert wq > 1.3 * cap.mean_wait(lam, 1.0, c)


# -- workloads through the public write API ----------------------------------------------
def drive(
    db: qa.Store,
    clock: qa.FakeClock,
    *,
    hours: float,
    rate: Callable[[float], float],
    mean_service: dict[str, float],
    workers: int,
    seed: int,
    fail_probability: float = 0.0,
    retry_delay: float = 20.0,
    beat_every: float = 30.0,
) -> dict[str, int]:
    """A queue simulated event by event on the fake clock, written through the API.

    Arrivals are Poisson with a rate that is constant within each clock hour
    (``rate(hour_start)``), types drawn uniformly, run times exponential. Idle workers
    claim as soon as something is runnable. Returns counts of what was written.
    """
    rng = random.Random(seed)
    names = [f"w{i}" for i in range(workers)]
    kinds = sorted(mean_service)
    start = clock()
    end = start + hours * HOUR
    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(at: float, kind: str, arg: object = None) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, arg))

    def next_arrival(t: float) -> float:
        while t < end:
            hour_start = math.floor(t / HOUR) * HOUR
            r = rate(hour_start)
            gap = rng.expovariate(r) if r > 0 else math.inf
            if t + gap < hour_start + HOUR:
                return t + gap
            t = hour_start + HOUR  # memoryless: start afresh at the hour boundary
        return math.inf

    counts = {"tasks": 0, "retries": 0}
    idle: list[str] = []
    with db.transaction():
        for i, name in enumerate(names):
            qa.register_worker(db, name)
            qa.heartbeat(db, name)
            idle.append(name)
            push(start + beat_every * (i + 1) / workers, "beat", name)
        push(next_arrival(start), "arrival")

        def try_claim(at: float) -> None:
            while idle:
                task = qa.claim(db, idle[-1], lease="2h")
                if task is None:
                    return
                worker = idle.pop()
                push(at + rng.expovariate(1.0 / mean_service[task.type]), "finish", (worker, task))

        while events:
            at, _, kind, arg = heapq.heappop(events)
            if at > end:
                break
            clock.set(at)
            if kind == "beat":
                qa.heartbeat(db, str(arg))
                push(at + beat_every, "beat", arg)
            elif kind == "arrival":
                qa.enqueue(db, rng.choice(kinds))
                counts["tasks"] += 1
                push(next_arrival(at), "arrival")
                try_claim(at)
            elif kind == "finish":
                worker, task = arg  # type: ignore[misc]
                if rng.random() < fail_probability:
                    status = qa.fail(db, task.id, "boom", delay=retry_delay)
                    if status == "queued":
                        counts["retries"] += 1
                        push(at + retry_delay, "wake")
                else:
                    qa.complete(db, task.id)
                idle.append(worker)
                try_claim(at)
            elif kind == "wake":
                try_claim(at)
    clock.set(end)
    return counts


@pytest.fixture(scope="module")
def steady() -> Iterator[tuple[qa.Store, dict[str, int]]]:
    clock = qa.FakeClock(MIDNIGHT)
    with qa.connect(":memory:", clock=clock) as db:
        counts = drive(
            db,
            clock,
            hours=4,
            rate=lambda _h: 0.5,
            mean_service={"email": 4.0, "resize": 4.0},
            workers=3,
            seed=11,
            fail_probability=0.1,
        )
        yield db, counts


def diurnal_rate(hour_start: float) -> float:
    hour = int((hour_start % DAY) // HOUR)
    if 12 <= hour < 18:
        return 0.08  # the busy afternoon
    if hour < 6:
        return 0.01  # the quiet night
    return 0.04


@pytest.fixture(scope="module")
def diurnal() -> Iterator[qa.Store]:
    clock = qa.FakeClock(MIDNIGHT)
    with qa.connect(":memory:", clock=clock) as db:
        drive(
            db,
            clock,
            hours=48,
            rate=diurnal_rate,
            mean_service={"report": 60.0, "email": 20.0},
            workers=6,
            seed=5,
            beat_every=60.0,
        )
        yield db


def test_observed_arrival_rates_match_the_workload(
    steady: tuple[qa.Store, dict[str, int]],
) -> None:
    db, counts = steady
    rates = cap.arrival_rates(db, since=MIDNIGHT)
    assert rates.columns.tolist() == [
        "bucket",
        "arrivals",
        "retries",
        "observed_s",
        "arrival_rate",
    ]
    assert str(rates["bucket"].dtype) == "datetime64[us, UTC]"
    assert len(rates) == 4
    assert rates["observed_s"].tolist() == [HOUR] * 4
    assert int(rates["arrivals"].sum()) == counts["tasks"] + counts["retries"]
    assert int(rates["retries"].sum()) == counts["retries"]
    # Poisson at 0.5/s plus ~10 % retries: ~1980 entries an hour, sd ~45.
    assert rates["arrival_rate"].mean() == pytest.approx(0.55, rel=0.05)
    by_type = cap.arrival_rates(db, since=MIDNIGHT, by="type", freq="2h")
    assert by_type["type"].dtype == "category"
    assert len(by_type) == 4  # two buckets x two types
    assert by_type["arrivals"].sum() == rates["arrivals"].sum()
    hourly = cap.arrival_rates(db, since=MIDNIGHT, by="hour_of_day")
    assert hourly["hour_of_day"].tolist() == list(range(24))
    assert hourly["observed_s"].sum() == pytest.approx(4 * HOUR)
    assert hourly["arrival_rate"].iloc[4:].isna().all()
    with pytest.raises(ValueError, match="freq"):
        cap.arrival_rates(db, by="hour_of_day", freq="30min")


def test_observed_service_times_and_fleet(steady: tuple[qa.Store, dict[str, int]]) -> None:
    db, _counts = steady
    service = cap.service_times(db)
    assert service["type"].tolist() == ["email", "resize"]
    # Exponential run times with mean 4 s: cs2 near 1.
    assert service["service_time_s"].to_numpy() == pytest.approx([4.0, 4.0], rel=0.06)
    assert service["cs2"].to_numpy() == pytest.approx([1.0, 1.0], abs=0.15)
    overall = cap.service_times(db, by=None)
    assert len(overall) == 1 and int(overall["attempts"].iloc[0]) == service["attempts"].sum()
    fleet = cap.fleet(db, since=MIDNIGHT)
    assert fleet["workers_alive"].to_numpy() == pytest.approx([3.0] * 4, rel=0.02)
    # Offered load 0.55/s x 4 s = 2.2 busy workers out of 3.
    assert fleet["utilization"].mean() == pytest.approx(2.2 / 3, rel=0.06)
    hourly = cap.fleet(db, since=MIDNIGHT, by="hour_of_day")
    assert hourly["workers_alive"].iloc[:4].to_numpy() == pytest.approx([3.0] * 4, rel=0.02)


def test_littles_law_holds_on_a_steady_workload(
    steady: tuple[qa.Store, dict[str, int]],
) -> None:
    db, _counts = steady
    check = cap.littles_law(db, since=MIDNIGHT)
    assert check.columns.tolist() == [
        "bucket",
        "arrivals",
        "mean_backlog",
        "arrival_rate",
        "mean_wait_s",
        "predicted_backlog",
        "relative_difference",
    ]
    assert len(check) == 4
    # Retried tasks sit out a 20 s backoff, so the backlog is well above zero.
    assert (check["mean_backlog"] > 1.0).all()
    # Tolerance: only waits straddling a bucket edge break the identity; with waits of
    # seconds and hour buckets that is well under 1 %; allow 3 %.
    assert check["relative_difference"].abs().max() < 0.03
    whole = cap.littles_law(db, since=MIDNIGHT, freq="4h")
    assert abs(whole["relative_difference"].iloc[0]) < 0.01


def test_littles_law_by_hand_and_as_of(db: qa.Store, clock: qa.FakeClock) -> None:
    empty = cap.littles_law(db)
    assert empty.empty and str(empty["bucket"].dtype) == "datetime64[us, UTC]"
    start = clock()
    qa.register_worker(db, "w")
    qa.enqueue(db, "a")
    clock.advance(100)
    qa.claim(db, "w")
    clock.advance(HOUR)
    check = cap.littles_law(db, since=start, until=start + 1000, freq="1000s")
    row = check.iloc[0]
    assert (row["arrivals"], row["mean_wait_s"]) == (1, 100.0)
    assert row["mean_backlog"] == pytest.approx(0.1)
    assert row["predicted_backlog"] == pytest.approx(0.1)
    # As of 50 s after the enqueue the task is still waiting: counted up to then.
    early = cap.littles_law(db, since=start, now=start + 50, freq="1000s")
    assert early["mean_wait_s"].iloc[0] == pytest.approx(50.0)
    assert early["mean_backlog"].iloc[0] == pytest.approx(1.0)


def test_plan_recommends_more_workers_in_the_afternoon(diurnal: qa.Store) -> None:
    frame = cap.plan(diurnal, since="48h")
    assert frame.columns.tolist() == ["hour_of_day", *cap._PLAN_COLUMNS]
    assert frame["hour_of_day"].tolist() == list(range(24))
    assert frame["recommended_workers"].dtype == "Int64"
    afternoon = frame[frame["hour_of_day"].between(12, 17)]
    night = frame[frame["hour_of_day"].between(0, 5)]
    assert afternoon["recommended_workers"].min() > night["recommended_workers"].max()
    assert afternoon["arrival_rate"].mean() == pytest.approx(0.08, rel=0.1)
    assert night["arrival_rate"].mean() == pytest.approx(0.01, rel=0.25)
    # The recommendation meets the target, and the fleet of 6 is stable all day.
    assert (frame["percentile_wait_s"] <= 30.0).all()
    assert frame["stable"].all()
    assert frame["workers_alive"].to_numpy() == pytest.approx([6.0] * 24, rel=0.02)
    assert frame.attrs["target_wait_s"] == 30.0 and frame.attrs["percentile"] == 0.95
    # Service time mixes two types (60 s and 20 s) in equal shares: mean 40 s.
    assert frame["service_time_s"].mean() == pytest.approx(40.0, rel=0.08)
    # Poisson arrivals: the estimated ca2 is near 1 where there are enough gaps.
    assert afternoon["ca2"].to_numpy() == pytest.approx([1.0] * 6, abs=0.3)


def test_plan_needs_no_history_before_its_window(diurnal: qa.Store, tmp_path: Path) -> None:
    """Tasks finished before the window change no answer, so the plan does not read them."""
    now = diurnal.now()
    lo = now - 20 * 3600
    copy = tmp_path / "window.db"
    with sqlite3.connect(copy) as target:
        diurnal.conn.backup(target)
    with sqlite3.connect(copy) as raw:
        gone = raw.execute("SELECT count(*) FROM tasks WHERE finished_at < ?", (lo,)).fetchone()
        raw.execute(
            "DELETE FROM attempts WHERE task_id IN (SELECT id FROM tasks WHERE finished_at < ?)",
            (lo,),
        )
        raw.execute("DELETE FROM tasks WHERE finished_at < ?", (lo,))
    assert gone[0] > 1000  # most of the history
    with qa.connect(copy, readonly=True, clock=lambda: now) as trimmed:
        for by in ("hour_of_day", "type"):
            pd.testing.assert_frame_equal(
                cap.plan(trimmed, since=lo, by=by), cap.plan(diurnal, since=lo, by=by)
            )
        pd.testing.assert_frame_equal(
            cap.littles_law(trimmed, since=lo), cap.littles_law(diurnal, since=lo)
        )
        pd.testing.assert_frame_equal(
            cap.arrival_rates(trimmed, since=lo), cap.arrival_rates(diurnal, since=lo)
        )


def test_plan_growth_and_mean_target(diurnal: qa.Store) -> None:
    today = cap.plan(diurnal, since="48h")
    grown = cap.plan(diurnal, since="48h", growth=1.5)
    assert (grown["recommended_workers"] >= today["recommended_workers"]).all()
    assert (grown["recommended_workers"] > today["recommended_workers"]).any()
    # At 4x the afternoon load (~12.8 busy workers) the fleet of 6 cannot keep up.
    overload = cap.plan(diurnal, since="48h", growth=4.0)
    peak = overload[overload["hour_of_day"] == 15].iloc[0]
    assert not peak["stable"] and peak["current_wait_s"] == math.inf
    assert peak["note"].startswith("unstable")
    assert peak["recommended_workers"] > peak["offered_load"] * 4
    mean_target = cap.plan(diurnal, since="48h", percentile=None, target_wait="10s")
    assert mean_target["percentile_wait_s"].isna().all()
    assert (mean_target["expected_wait_s"] <= 10.0).all()
    with pytest.raises(ValueError, match="growth"):
        cap.plan(diurnal, growth=-1)
    with pytest.raises(ValueError, match="percentile"):
        cap.plan(diurnal, percentile=95)
    with pytest.raises(ValueError, match="by"):
        cap.plan(diurnal, by="worker")


def test_plan_by_type(diurnal: qa.Store) -> None:
    frame = cap.plan(diurnal, since="48h", by="type", ca2=1.0)
    assert frame["type"].tolist() == ["email", "report"]
    rows = frame.set_index("type")
    assert rows.loc["report", "service_time_s"] == pytest.approx(60.0, rel=0.08)
    assert rows.loc["email", "service_time_s"] == pytest.approx(20.0, rel=0.08)
    assert rows.loc["report", "offered_load"] > rows.loc["email", "offered_load"]
    assert rows.loc["report", "recommended_workers"] >= rows.loc["email", "recommended_workers"]
    assert (frame["ca2"] == 1.0).all()
    assert frame["current_wait_s"].isna().all()
    # Utilisation shares of one fleet add up to the fleet's utilisation.
    fleet = cap.fleet(diurnal, since="48h", freq="48h")
    busy_share = float(frame["utilization"].sum())
    assert busy_share == pytest.approx(
        float((fleet["workers_busy"] * fleet["observed_s"]).sum())
        / float((fleet["workers_alive"] * fleet["observed_s"]).sum()),
        rel=0.01,
    )


def test_plan_on_an_empty_store(db: qa.Store) -> None:
    frame = cap.plan(db)
    assert len(frame) == 24
    assert frame["recommended_workers"].isna().all()
    assert (frame["arrivals"] == 0).all()


@pytest.mark.skipif(not SAMPLE_DB.exists(), reason="data/sample.db not generated yet")
def test_plan_on_the_sample_database(tmp_path: Path) -> None:
    # A consistent snapshot through SQLite's backup API (the file may be in use), then
    # opened read-only as an analyst would.
    copy = tmp_path / "sample.db"
    source = sqlite3.connect(f"file:{SAMPLE_DB}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    with target:
        source.backup(target)
    source.close()
    target.close()
    with qa.connect(copy, readonly=True) as db:
        last = db.query("SELECT max(created_at) FROM tasks")[0][0]
        if last is None:
            pytest.skip("data/sample.db has no tasks yet")
        frame = cap.plan(db, now=last)
    afternoon = frame[frame["hour_of_day"].between(13, 17)]["recommended_workers"]
    night = frame[frame["hour_of_day"].between(1, 5)]["recommended_workers"]
    assert afternoon.mean() > night.mean()


def test_observed_functions_are_empty_safe(db: qa.Store) -> None:
    assert cap.arrival_rates(db).empty
    assert cap.service_times(db).empty
    fleet = cap.fleet(db, by="hour_of_day")
    assert len(fleet) == 24 and fleet["workers_alive"].isna().all()
    assert cap.what_if(0.0, 1.0)["prob_wait"].eq(0.0).all()


def test_plan_frame_is_plot_ready(diurnal: qa.Store) -> None:
    frame = cap.plan(diurnal, since="48h")
    assert pd.api.types.is_float_dtype(frame["workers_alive"])
    assert pd.api.types.is_bool_dtype(frame["stable"])
    assert frame["note"].map(type).eq(str).all()


def test_hours_without_observations_are_unknown_not_unstable(tmp_path: Path) -> None:
    """A short store's unobserved hours say NA (unknown), never False (overloaded)."""
    clock = qa.FakeClock(1_700_000_000.0)  # 22:13 UTC
    with qa.connect(tmp_path / "short.db", clock=clock) as db:
        qa.register_worker(db, "w1")
        for _ in range(20):
            task = qa.enqueue(db, "email")
            qa.heartbeat(db, "w1")
            assert qa.claim(db, "w1") is not None
            clock.advance(10)
            qa.complete(db, task)
            clock.advance(20)
        frame = qa.capacity.plan(db, since="1h", now=clock())
    assert frame["stable"].dtype == "boolean"
    observed = frame["note"] != "not observed in the window"
    assert observed.sum() in (1, 2)
    assert frame.loc[~observed, "stable"].isna().all()
    assert not (frame["stable"] == False).any()  # noqa: E712 - nothing reads as overloaded
    assert not qa.capacity.understaffed(frame)[~observed].any()

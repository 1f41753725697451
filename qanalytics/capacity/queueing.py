"""Queueing formulas: the probability of waiting, mean waits and percentiles, servers needed.

Two families of formulas, all with rates **per second** and waits in seconds:

* **M/M/c (Erlang C)**: :func:`erlang_c`, :func:`mean_wait`, :func:`wait_exceeds`,
  :func:`wait_percentile`. Exact when tasks arrive as a Poisson process (independent
  producers, no bursts) and run times are exponential (coefficient of variation 1), served
  first come, first served by ``c`` identical workers that never go away.
* **G/G/c (Allen-Cunneen)**: :func:`mean_wait_gg`, :func:`wait_exceeds_gg`,
  :func:`wait_percentile_gg`. An approximation for any arrival and run-time distribution,
  described by their squared coefficients of variation ``ca2`` (arrivals) and ``cs2``
  (run times): the M/M/c mean wait times ``(ca2 + cs2) / 2``. With ``ca2 = cs2 = 1`` it
  equals M/M/c exactly. It is good (typically within 10 %) at moderate to high
  utilisation and grows rougher when the system is nearly empty or ``cs2`` is very large.
  Real task run times are rarely exponential, so the plans use this family.

An unstable system (utilisation ``arrival_rate / (servers * service_rate) >= 1``) has no
steady state: the queue grows without bound. It is reported as such: the probability of
waiting is 1.0 and waits are ``math.inf``, never a large finite number.

Erlang C is computed from the Erlang B recurrence ``B(0) = 1``,
``B(k) = a B(k-1) / (k + a B(k-1))`` and ``C = c B / (c - a (1 - B))``, which stays
between 0 and 1 at every step, so thousands of servers work where factorials overflow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._time import parse_duration

__all__ = [
    "erlang_b",
    "erlang_c",
    "mean_wait",
    "mean_wait_gg",
    "servers_needed",
    "wait_exceeds",
    "wait_exceeds_gg",
    "wait_percentile",
    "wait_percentile_gg",
    "what_if",
]

# -- argument checks ----------------------------------------------------------------------
def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    return float(value)


def _rate(value: Any, name: str, *, positive: bool = False) -> float:
    x = _number(value, name)
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name}={value!r} must be a finite {kind} rate per second")
    return x


def _cv2(value: Any, name: str) -> float:
    x = _number(value, name)
    if not math.isfinite(x) or x < 0:
        raise ValueError(
            f"{name}={value!r} must be a finite non-negative squared coefficient of variation"
        )
    return x


def _servers(value: Any, name: str = "servers") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    x = float(value)
    if not math.isfinite(x) or x != math.floor(x) or x < 1:
        raise ValueError(f"{name}={value!r} must be a whole number of servers, at least 1")
    return int(x)


def _percentile(value: Any, name: str = "percentile") -> float:
    x = _number(value, name)
    if not 0.0 < x < 1.0:  # NaN fails too
        raise ValueError(f"{name}={value!r} must lie strictly between 0 and 1")
    return x


def _wait(value: Any, name: str) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, bool
    )
    if number and (math.isnan(float(value)) or float(value) < 0):
        raise ValueError(f"{name}={value!r} must be a non-negative number of seconds")
    return parse_duration(value, name=name)


# -- the models ---------------------------------------------------------------------------
def _erlang_b_value(a: float, c: int) -> float:
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def _c_from_b(b: float, a: float, c: int) -> float:
    if a >= c:
        return 1.0
    return min(1.0, c * b / (c - a * (1.0 - b)))


@dataclass(frozen=True)
class _Waits:
    """One G/G/c operating point: P(wait), mean wait, and the conditional-wait decay rate."""

    prob_wait: float
    mean: float
    decay: float  # P(W > t) = prob_wait * exp(-decay * t); inf when nobody waits

    def exceeds(self, t: float) -> float:
        if self.prob_wait == 0.0:
            return 0.0
        return self.prob_wait * math.exp(-self.decay * t)

    def percentile(self, p: float) -> float:
        if self.prob_wait <= 1.0 - p or math.isinf(self.decay):
            return 0.0
        if self.decay == 0.0:
            return math.inf
        return math.log(self.prob_wait / (1.0 - p)) / self.decay


def _waits(lam: float, mu: float, c: int, ca2: float, cs2: float, b: float | None = None) -> _Waits:
    a = lam / mu
    if lam == 0.0:
        return _Waits(0.0, 0.0, math.inf)
    if a >= c:
        return _Waits(1.0, math.inf, 0.0)
    if b is None:
        b = _erlang_b_value(a, c)
    pw = _c_from_b(b, a, c)
    scale = (ca2 + cs2) / 2.0
    if scale == 0.0:  # deterministic arrivals and service below capacity never wait
        return _Waits(0.0, 0.0, math.inf)
    drain = c * mu - lam
    return _Waits(pw, pw * scale / drain, drain / scale)


def erlang_b(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Blocking probability of an M/M/c/c loss system (Erlang B).

    Applies when a task that finds every worker busy is turned away rather than queued;
    it is also the stable building block of :func:`erlang_c`.

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0), i.e. 1 / mean run time.
    servers : int
        Number of workers (>= 1).

    Returns
    -------
    float
        B(c, a) with offered load ``a = arrival_rate / service_rate``, in [0, 1].

    Raises
    ------
    ValueError
        If a rate is negative, NaN or infinite, or `servers` is not a whole number >= 1.
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    c = _servers(servers)
    return _erlang_b_value(lam / mu, c)


def erlang_c(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Probability that a task has to wait, M/M/c (Erlang C).

    Exact for Poisson arrivals and exponential run times with `servers` identical
    workers, first come first served. For other distributions it is the approximation
    the Allen-Cunneen formulas (:func:`mean_wait_gg`) build on.

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0), i.e. 1 / mean run time.
    servers : int
        Number of workers (>= 1).

    Returns
    -------
    float
        P(wait > 0) in [0, 1]; exactly 1.0 when the system is unstable
        (``arrival_rate >= servers * service_rate``) and 0.0 without arrivals.

    Raises
    ------
    ValueError
        If a rate is negative, NaN or infinite, or `servers` is not a whole number >= 1.

    Examples
    --------
    >>> round(erlang_c(2.0, 1.0, 3), 6)  # 4/9
    0.444444
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    c = _servers(servers)
    return _waits(lam, mu, c, 1.0, 1.0).prob_wait


def mean_wait(arrival_rate: float, service_rate: float, servers: int) -> float:
    """Mean time a task waits before a worker claims it, M/M/c (seconds).

    ``Wq = C(c, a) / (c * service_rate - arrival_rate)``. Exact for Poisson arrivals and
    exponential run times; use :func:`mean_wait_gg` when run times vary more or less
    than exponential ones (measured coefficient of variation far from 1).

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    servers : int
        Number of workers (>= 1).

    Returns
    -------
    float
        Seconds; ``math.inf`` when the system is unstable.

    Raises
    ------
    ValueError
        If a rate is negative, NaN or infinite, or `servers` is not a whole number >= 1.
    """
    return mean_wait_gg(arrival_rate, service_rate, servers, ca2=1.0, cs2=1.0)


def wait_exceeds(t: Any, arrival_rate: float, service_rate: float, servers: int) -> float:
    """Probability that a task waits longer than `t`, M/M/c.

    ``P(W > t) = C(c, a) * exp(-(c * service_rate - arrival_rate) * t)``: exact for
    Poisson arrivals, exponential run times and first come, first served.

    Parameters
    ----------
    t : float or str
        Seconds (>= 0) or a duration string such as ``"30s"``.
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    servers : int
        Number of workers (>= 1).

    Returns
    -------
    float
        A probability; 1.0 when the system is unstable.

    Raises
    ------
    ValueError
        For a negative or NaN `t` or rate, or `servers` not a whole number >= 1.
    """
    return wait_exceeds_gg(t, arrival_rate, service_rate, servers, ca2=1.0, cs2=1.0)


def wait_percentile(
    percentile: float, arrival_rate: float, service_rate: float, servers: int
) -> float:
    """The wait that a share `percentile` of tasks do not exceed, M/M/c (seconds).

    Inverts :func:`wait_exceeds`: 0 when at least `percentile` of tasks never wait
    (``C <= 1 - percentile``), else ``ln(C / (1 - percentile)) / (c mu - lambda)``.

    Parameters
    ----------
    percentile : float
        In (0, 1), e.g. 0.95.
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    servers : int
        Number of workers (>= 1).

    Returns
    -------
    float
        Seconds; ``math.inf`` when the system is unstable.

    Raises
    ------
    ValueError
        If `percentile` is outside (0, 1), a rate is negative or NaN, or `servers` is
        not a whole number >= 1.
    """
    return wait_percentile_gg(percentile, arrival_rate, service_rate, servers, ca2=1.0, cs2=1.0)


def mean_wait_gg(
    arrival_rate: float,
    service_rate: float,
    servers: int,
    *,
    ca2: float = 1.0,
    cs2: float = 1.0,
) -> float:
    """Mean wait for G/G/c by the Allen-Cunneen approximation (seconds).

    ``Wq ~ C(c, a) / (c mu - lambda) * (ca2 + cs2) / 2``: the M/M/c mean wait scaled by
    the average of the squared coefficients of variation. Use it when run times (or
    arrivals) are not exponential (Poisson); it equals :func:`mean_wait` when
    ``ca2 = cs2 = 1``. Typically within about 10 % of the true value at utilisation above
    0.5; less accurate for a nearly idle system or very heavy-tailed run times.

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    servers : int
        Number of workers (>= 1).
    ca2 : float, default 1.0
        Squared coefficient of variation of inter-arrival times (1 for Poisson arrivals,
        above 1 for bursty producers).
    cs2 : float, default 1.0
        Squared coefficient of variation of run times (variance / mean**2; 1 for
        exponential, 0 for constant).

    Returns
    -------
    float
        Seconds; ``math.inf`` when the system is unstable.

    Raises
    ------
    ValueError
        If a rate, `ca2` or `cs2` is negative, NaN or infinite, or `servers` is not a
        whole number >= 1.
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    c = _servers(servers)
    return _waits(lam, mu, c, _cv2(ca2, "ca2"), _cv2(cs2, "cs2")).mean


def wait_exceeds_gg(
    t: Any,
    arrival_rate: float,
    service_rate: float,
    servers: int,
    *,
    ca2: float = 1.0,
    cs2: float = 1.0,
) -> float:
    """Probability that a task waits longer than `t`, G/G/c approximation.

    The approximation: a task waits with the Erlang C probability ``C(c, a)`` (as in
    Allen-Cunneen), and a wait, given that it happens, is exponential with the mean that
    makes the overall mean equal the Allen-Cunneen mean, ``(ca2 + cs2) / 2 / (c mu -
    lambda)``. So ``P(W > t) ~ C * exp(-t (c mu - lambda) * 2 / (ca2 + cs2))``.
    Exponential conditional waits are the heavy-traffic limit (Kingman), so this is
    best at high utilisation; with ``ca2 = cs2 = 1`` it is the exact M/M/c result.

    Parameters
    ----------
    t : float or str
        Seconds (>= 0) or a duration string such as ``"30s"``.
    arrival_rate, service_rate : float
        Per second; see :func:`mean_wait_gg`.
    servers : int
        Number of workers (>= 1).
    ca2, cs2 : float, default 1.0
        Squared coefficients of variation of inter-arrival and run times.

    Returns
    -------
    float
        A probability; 1.0 when the system is unstable.

    Raises
    ------
    ValueError
        For a negative or NaN `t`, rate, `ca2` or `cs2`, or `servers` not a whole
        number >= 1.
    """
    seconds = _wait(t, "t")
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    c = _servers(servers)
    return _waits(lam, mu, c, _cv2(ca2, "ca2"), _cv2(cs2, "cs2")).exceeds(seconds)


def wait_percentile_gg(
    percentile: float,
    arrival_rate: float,
    service_rate: float,
    servers: int,
    *,
    ca2: float = 1.0,
    cs2: float = 1.0,
) -> float:
    """The wait at `percentile`, G/G/c approximation (seconds).

    Inverts :func:`wait_exceeds_gg` (Erlang C probability of waiting, exponential
    conditional wait with the Allen-Cunneen mean): 0 when ``C <= 1 - percentile``, else
    ``ln(C / (1 - percentile)) * (ca2 + cs2) / 2 / (c mu - lambda)``.

    Parameters
    ----------
    percentile : float
        In (0, 1), e.g. 0.95.
    arrival_rate, service_rate : float
        Per second; see :func:`mean_wait_gg`.
    servers : int
        Number of workers (>= 1).
    ca2, cs2 : float, default 1.0
        Squared coefficients of variation of inter-arrival and run times.

    Returns
    -------
    float
        Seconds; ``math.inf`` when the system is unstable.

    Raises
    ------
    ValueError
        If `percentile` is outside (0, 1), or a rate, `ca2`, `cs2` or `servers` is
        invalid.
    """
    p = _percentile(percentile)
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    c = _servers(servers)
    return _waits(lam, mu, c, _cv2(ca2, "ca2"), _cv2(cs2, "cs2")).percentile(p)


def servers_needed(
    arrival_rate: float,
    service_rate: float,
    *,
    target_wait: Any,
    percentile: float | None = None,
    ca2: float = 1.0,
    cs2: float = 1.0,
) -> int:
    """The smallest number of workers whose wait meets the target.

    With the defaults ``ca2 = cs2 = 1`` this is the M/M/c (Erlang C) answer; with
    measured coefficients of variation it uses the Allen-Cunneen G/G/c approximation
    (see :func:`mean_wait_gg` and :func:`wait_percentile_gg`). The search walks the
    Erlang B recurrence upwards once, so it costs O(answer) steps.

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    target_wait : float or str
        Seconds or a duration string (``"30s"``). Must be positive when `percentile`
        is None (a mean wait of exactly zero is never reached).
    percentile : float, optional
        In (0, 1): the wait at this percentile must be at most `target_wait` (for
        example 0.95 with ``"30s"``: 95 % of tasks wait at most 30 s). None: the mean
        wait must be at most `target_wait`.
    ca2, cs2 : float, default 1.0
        Squared coefficients of variation of inter-arrival and run times.

    Returns
    -------
    int
        The number of workers; 0 when `arrival_rate` is 0. Always more than the offered
        load ``arrival_rate / service_rate``, so the result is a stable system.

    Raises
    ------
    ValueError
        For invalid rates, `ca2`, `cs2`, `percentile`, or a negative `target_wait` (or
        zero with ``percentile=None``).

    Examples
    --------
    >>> servers_needed(2.0, 1.0, target_wait=0.1)
    4
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    target = parse_duration(target_wait, name="target_wait", allow_zero=percentile is not None)
    p = None if percentile is None else _percentile(percentile)
    ca, cs = _cv2(ca2, "ca2"), _cv2(cs2, "cs2")
    if lam == 0.0:
        return 0
    a = lam / mu
    b = 1.0
    c = 0
    while True:
        c += 1
        b = a * b / (c + a * b)
        if a >= c:
            continue
        w = _waits(lam, mu, c, ca, cs, b)
        value = w.mean if p is None else w.percentile(p)
        if value <= target:
            return c


def what_if(
    arrival_rate: float,
    service_rate: float,
    servers: Iterable[int] | None = None,
    *,
    ca2: float = 1.0,
    cs2: float = 1.0,
    percentile: float = 0.95,
) -> pd.DataFrame:
    """Waits against the number of workers: the data for a what-if curve.

    Uses the Allen-Cunneen G/G/c approximation, which is exact M/M/c with the default
    ``ca2 = cs2 = 1``.

    Parameters
    ----------
    arrival_rate : float
        Tasks per second (>= 0).
    service_rate : float
        Tasks one worker finishes per second (> 0).
    servers : iterable of int, optional
        Worker counts to evaluate, e.g. ``range(5, 30)``. Default: from the largest
        unstable count (at least 1) up to two past the count where under 1 % of tasks
        wait.
    ca2, cs2 : float, default 1.0
        Squared coefficients of variation of inter-arrival and run times.
    percentile : float, default 0.95
        The percentile for ``percentile_wait_s``.

    Returns
    -------
    pandas.DataFrame
        One row per worker count, ascending: ``servers`` (int64), ``utilization``
        (float: load per worker), ``stable`` (bool), ``prob_wait`` (float),
        ``mean_wait_s``, ``percentile_wait_s`` (float seconds, ``inf`` when unstable),
        ``percentile`` (float, the same on every row).

    Raises
    ------
    ValueError
        For invalid rates, `ca2`, `cs2`, `percentile` or worker counts.
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate", positive=True)
    ca, cs = _cv2(ca2, "ca2"), _cv2(cs2, "cs2")
    p = _percentile(percentile)
    a = lam / mu
    if servers is None:
        low = max(1, math.floor(a))
        high = max(low, servers_needed(lam, mu, target_wait=0.0, percentile=0.99)) + 2
        counts = list(range(low, high + 1))
    else:
        if isinstance(servers, (str, bytes)):
            raise TypeError("servers must be an iterable of integers, not a string")
        counts = sorted({_servers(s) for s in servers})
    rows = []
    b = 1.0
    k = 0
    for c in counts:
        while k < c:
            k += 1
            b = a * b / (k + a * b)
        w = _waits(lam, mu, c, ca, cs, b)
        rows.append((c, a / c, a < c, w.prob_wait, w.mean, w.percentile(p)))
    frame = pd.DataFrame(
        rows,
        columns=[
            "servers",
            "utilization",
            "stable",
            "prob_wait",
            "mean_wait_s",
            "percentile_wait_s",
        ],
    )
    frame = frame.astype(
        {
            "servers": "int64",
            "utilization": "float64",
            "stable": "bool",
            "prob_wait": "float64",
            "mean_wait_s": "float64",
            "percentile_wait_s": "float64",
        }
    )
    frame["percentile"] = np.full(len(frame), p, dtype="float64")
    return frame



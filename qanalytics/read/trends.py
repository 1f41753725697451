"""Read side: the queue over time.

Questions over history
(success rate, throughput, depth over time, latency, utilisation, retries) read only the
columns they need in one fast load and aggregate with vectorised pandas/numpy. Success
rate and throughput stream the finished rows in fixed-size batches and count each batch,
so their memory is bounded by a batch plus the result, not by the history.

Buckets are fixed-width (``freq`` is a duration such as ``"1min"``, ``"1h"``, ``"1d"``)
and aligned to the unix epoch, so hour and day buckets start on UTC hour and day
boundaries. A bucket covers ``[bucket, bucket + freq)``. Windows (``since``/``until``)
include both ends, and ``until`` never passes ``now``: events after ``now`` are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .._docstrings import share_docs
from ..history.marks import HOUR_S, META_TASKS_SUMMARIZED_UNTIL, hour_of, meta_get
from ..store import Store
from ..store.schema import COUNTERS_VERSION, OUTCOMES, TASK_STATUSES, TIERS_VERSION
from .common import (
    _CANCELLED,
    _COMPLETED,
    _FAILED,
    _O_ABANDONED,
    _O_CANCELLED,
    _O_COMPLETED,
    _O_FAILED,
    _OUTCOME_CODE,
    _OUTCOME_OF_STATUS,
    _STATUS_CODE,
    MAX_BUCKETS,
    OUTCOME_DTYPE,
    UTC_DTYPE,
    _attempt_times,
    _bucket_range,
    _by_dtypes,
    _by_list,
    _categorical,
    _check_quantiles,
    _floor,
    _freq_seconds,
    _read_with_types,
    _Retry,
    _type_expr,
    _TypeExpr,
    _window_sql,
    _worker_codes,
    _worker_lookup,
    _z_score,
    as_utc,
    empty_frame,
    resolve_window,
)
from .liveness import alive_spans

__all__ = [
    "depth_timeline",
    "latency",
    "retry_outcomes",
    "success_rate",
    "throughput",
    "utilization",
]


# -- success_rate and throughput ------------------------------------------------------------
def _wilson(completed: np.ndarray, total: np.ndarray, z: float) -> tuple[np.ndarray, ...]:
    n = total.astype("float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        p = completed / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p; clamping only removes rounding at p = 0 or 1.
    low = np.minimum(np.clip(centre - half, 0.0, 1.0), p)
    high = np.maximum(np.clip(centre + half, 0.0, 1.0), p)
    return p, low, high


#: Finished rows per batch of :func:`_finished_counts`; memory is bounded by a batch.
_ROWS_PER_BATCH = 1 << 18
#: Outcome and status codes are below this (plus one, so that -1 maps to 0).
_N_CODES = 6


def _batch_counts(
    b: np.ndarray, codes: list[np.ndarray], sizes: list[int]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Count the distinct (bucket index, code, ...) rows of one batch.

    Codes are >= -1 and below ``size - 1``. Returns the distinct bucket indexes, codes
    and counts, sorted by (bucket, codes...).
    """
    b0 = int(b.min())
    span = int(b.max()) - b0 + 1
    cells = span
    for size in sizes:
        cells *= size
    if cells < 1 << 62:
        key = b - b0
        for code, size in zip(codes, sizes, strict=True):
            key = key * size + (code + 1)
        if cells <= 4 * len(key) + 1024:
            counts = np.bincount(key, minlength=cells)
            found = np.flatnonzero(counts)
            counts = counts[found]
        else:
            found, inverse = np.unique(key, return_inverse=True)
            counts = np.bincount(inverse.reshape(-1), minlength=len(found))
        parts: list[np.ndarray] = []
        rest = found
        for size in reversed(sizes):
            parts.append(rest % size - 1)
            rest = rest // size
        return rest + b0, parts[::-1], counts.astype("int64")
    rows, inverse = np.unique(np.column_stack([b, *codes]), axis=0, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), minlength=len(rows))
    return rows[:, 0], [rows[:, i + 1] for i in range(len(codes))], counts.astype("int64")


def _bucket_index(at: np.ndarray, width: float) -> np.ndarray:
    """``b`` with ``b * width <= at < (b + 1) * width``, decided by the bounds.

    A plain ``floor(at / width)`` can round a finish a hair before a bucket's end into
    the next bucket; the hourly tiers decide by the bounds, and so does this.
    """
    b = np.floor(at / width)
    b -= b * width > at
    b += (b + 1) * width <= at
    return b.astype("int64")


@dataclass(frozen=True)
class _TierPlan:
    """Which whole hours come from the tiers: ``[first, end)`` (first None: all before end)."""

    first: int | None
    end: int


def _tier_plan(
    db: Store, *, level: str, keys: list[str], lo: float | None, hi: float, width: float
) -> _TierPlan | None:
    """The hours to read from ``task_hours`` / ``attempt_hours``; None to scan everything.

    The tiers count by hour, type and outcome, so they serve buckets made of whole hours
    (`width` a multiple of an hour; buckets are aligned to the epoch, so every hour lies
    in one bucket) split by nothing or by type. Hours the window cuts are scanned.
    """
    if width % HOUR_S or set(keys) - {"type"} or db.layout != "native":
        return None
    if db.schema_version < TIERS_VERSION:
        return None
    mark = meta_get(db, META_TASKS_SUMMARIZED_UNTIL)
    if mark is None:
        return None
    first = None
    if lo is not None:
        first = hour_of(lo)
        if first * HOUR_S < lo:  # the window starts inside that hour
            first += 1
    end = min(hour_of(float(mark)), hour_of(hi))
    if first is not None and first >= end:
        return None
    return _TierPlan(first, end)


def _tier_counts(
    db: Store, plan: _TierPlan, *, level: str, outcomes: tuple[str, ...], width: float
) -> pd.DataFrame:
    """The tier rows of the plan's hours: ``bucket`` (seconds), ``type`` (text), codes, count."""
    table, column, count, names = (
        ("task_hours", "status", "tasks", TASK_STATUSES)
        if level == "task"
        else ("attempt_hours", "outcome", "attempts", OUTCOMES)
    )
    marks = ", ".join("?" * len(outcomes))
    terms, params = ["hour < ?"], [plan.end]
    if plan.first is not None:
        terms.append("hour >= ?")
        params.append(plan.first)
    data = db.read_columns(
        f"SELECT hour, type, {column}, {count} FROM {table}"
        f" WHERE {' AND '.join(terms)} AND {column} IN ({marks}) AND {count} > 0",
        [*params, *outcomes],
        columns={"hour": "int64", "type": "str", "outcome": "str", "count": "int64"},
        action=f"read {table}",
    )
    per_bucket = int(width) // HOUR_S
    code_of = {name: i for i, name in enumerate(names)}
    return pd.DataFrame(
        {
            "bucket": (data["hour"] // per_bucket).astype("float64") * width,
            "type": data["type"],
            "outcome": np.array([code_of[str(o)] for o in data["outcome"]], dtype="int64"),
            "count": data["count"].astype("int64"),
        }
    )


def _add_tiers(
    frame: pd.DataFrame,
    names: dict[str, list[str]],
    tiers: pd.DataFrame,
    keys: list[str],
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Add the tier counts to the scanned counts (same columns, type codes re-made)."""
    if "type" in keys:
        scanned = names.get("type", [])
        merged = sorted(set(scanned) | {str(t) for t in tiers["type"]})
        index = {name: i for i, name in enumerate(merged)}
        remap = np.array([index[name] for name in scanned] + [-1], dtype="int64")
        codes = frame["type"].to_numpy().astype("int64")
        frame = frame.assign(type=remap[np.where(codes >= 0, codes, len(scanned))])
        tiers = tiers.assign(type=np.array([index[str(t)] for t in tiers["type"]], dtype="int64"))
        names = {**names, "type": merged}
    else:
        tiers = tiers.drop(columns="type")
    cols = ["bucket", *keys, "outcome"]
    both = pd.concat([frame[[*cols, "count"]], tiers[[*cols, "count"]]], ignore_index=True)
    both = both.groupby(cols, sort=True)["count"].sum().reset_index()
    both["count"] = both["count"].astype("int64")
    return both, names


def _finished_counts(
    db: Store,
    *,
    level: str,
    keys: list[str],
    lo: float | None,
    hi: float,
    outcomes: tuple[str, ...],
    width: float,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Finishes in the window counted per (bucket, by-codes..., outcome code).

    Whole hours before the hourly tiers' watermark come from the tiers when the buckets
    allow it (:func:`_tier_plan`); the rest is scanned. The finished rows are read in
    batches of :data:`_ROWS_PER_BATCH` rows and counted per batch, so memory holds one
    batch plus the counts, not the history. Returns ``bucket`` (float seconds), one
    integer code column per key (-1: missing), ``outcome`` and ``count``, sorted by
    those columns, and the names of each key's codes.
    """
    plan = _tier_plan(db, level=level, keys=keys, lo=lo, hi=hi, width=width)
    # Rows ranges to scan: (start, end, end included); None: no lower bound.
    ranges: list[tuple[float | None, float, bool]]
    if plan is None:
        ranges = [(lo, hi, True)]
    else:
        ranges = []
        if plan.first is not None and lo is not None and lo < plan.first * HOUR_S:
            ranges.append((lo, float(plan.first * HOUR_S), False))
        ranges.append((float(plan.end * HOUR_S), hi, True))
    if (
        level == "task"
        and "worker_id" not in keys
        and db.layout == "native"
        and db.schema_version >= TIERS_VERSION
    ):
        frame, names = _pair_counts(db, keys=keys, ranges=ranges, outcomes=outcomes, width=width)
    else:
        frame, names = _scan_counts(
            db, level=level, keys=keys, ranges=ranges, outcomes=outcomes, width=width
        )
    if plan is not None:
        tiers = _tier_counts(db, plan, level=level, outcomes=outcomes, width=width)
        if len(tiers):
            frame, names = _add_tiers(frame, names, tiers, keys)
    return frame, names


#: Per (status, type) and range, up to this many buckets are counted one query each
#: (an index seek and a count, no row leaves SQLite); more are read as finish times.
_COUNT_QUERIES_PER_PAIR = 2048


def finished_pairs(db: Store, outcomes: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (status, type) pairs of the finished tasks with these statuses.

    A loose scan of ``tasks_finished``: one index seek per pair.

    Parameters
    ----------
    db : Store
    outcomes : tuple of str
        Final statuses.

    Returns
    -------
    list of (status, type)
    """
    pairs: list[tuple[str, str]] = []
    for status in outcomes:
        rows = db.query(
            "WITH RECURSIVE d(t) AS (SELECT min(type) FROM tasks WHERE status = ?1"
            " AND finished_at IS NOT NULL UNION ALL SELECT (SELECT min(type) FROM tasks"
            " WHERE status = ?1 AND finished_at IS NOT NULL AND type > d.t) FROM d"
            " WHERE d.t IS NOT NULL) SELECT t FROM d WHERE t IS NOT NULL",
            (status,),
            action="list finished task types",
        )
        pairs.extend((status, str(row[0])) for row in rows)
    return pairs


def _pair_counts(
    db: Store,
    *,
    keys: list[str],
    ranges: list[tuple[float | None, float, bool]],
    outcomes: tuple[str, ...],
    width: float,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Finished tasks in `ranges` per (bucket, [type code], status code), pair by pair.

    ``tasks_finished`` is ordered by (status, type, finished_at), so each (status, type)
    pair's finishes in a range are one contiguous stretch of the index: a bucket's count
    is a seek and a count, and where there are too many buckets for that, the pair's
    finish times alone are read (in batches) and bucketed here.
    """
    pairs = finished_pairs(db, outcomes)
    types = sorted({t for _s, t in pairs})
    type_code = {t: i for i, t in enumerate(types)}
    out_b: list[np.ndarray] = []
    out_type: list[np.ndarray] = []
    out_status: list[np.ndarray] = []
    out_n: list[np.ndarray] = []
    pair_sql = "FROM tasks WHERE status = ? AND type = ?"
    for status, type_ in pairs:
        found: dict[int, int] = {}
        for start, end, closed in ranges:
            upper = "<=" if closed else "<"
            if start is None:
                row = db.query(
                    f"SELECT min(finished_at) {pair_sql} AND finished_at IS NOT NULL",
                    (status, type_),
                    action="find the first finish",
                )
                if row[0][0] is None:
                    continue
                start = float(row[0][0])
            if start > end:
                continue
            first_b = int(_bucket_index(np.array([start]), width)[0])
            last_b = int(_bucket_index(np.array([end]), width)[0])
            if last_b - first_b < _COUNT_QUERIES_PER_PAIR:
                for b in range(first_b, last_b + 1):
                    lo_at = max(b * width, start)
                    hi_at, op = (b + 1) * width, "<"
                    if hi_at > end:
                        hi_at, op = end, upper
                    n = db.query(
                        f"SELECT count(*) {pair_sql} AND finished_at >= ?"
                        f" AND finished_at {op} ?",
                        (status, type_, lo_at, hi_at),
                        action="count finished tasks",
                    )[0][0]
                    if n:
                        found[b] = found.get(b, 0) + int(n)
                continue
            lower_bound = start
            while True:
                at = db.read_columns(
                    f"SELECT finished_at {pair_sql} AND finished_at >= ?"
                    f" AND finished_at {upper} ? ORDER BY finished_at LIMIT ?",
                    (status, type_, lower_bound, end, _ROWS_PER_BATCH),
                    columns={"at": "float64"},
                    action="read finish times",
                )["at"]
                full = len(at) == _ROWS_PER_BATCH
                if full:
                    edge = float(at[-1])
                    at = at[at < edge]  # the next batch starts at the last moment
                    if not len(at):  # a whole batch at one moment: count it at once
                        n = db.query(
                            f"SELECT count(*) {pair_sql} AND finished_at = ?",
                            (status, type_, edge),
                            action="count finished tasks",
                        )[0][0]
                        b = int(_bucket_index(np.array([edge]), width)[0])
                        found[b] = found.get(b, 0) + int(n)
                        lower_bound = math.nextafter(edge, math.inf)
                        if lower_bound > end or (lower_bound == end and not closed):
                            break
                        continue
                    lower_bound = edge
                if len(at):
                    bs, counts = np.unique(_bucket_index(at, width), return_counts=True)
                    for b, n in zip(bs.tolist(), counts.tolist(), strict=True):
                        found[b] = found.get(b, 0) + n
                if not full:
                    break
        if found:
            bs_arr = np.fromiter(found.keys(), dtype="int64", count=len(found))
            out_b.append(bs_arr)
            out_n.append(np.fromiter(found.values(), dtype="int64", count=len(found)))
            out_type.append(np.full(len(found), type_code[type_], dtype="int64"))
            out_status.append(np.full(len(found), TASK_STATUSES.index(status), dtype="int64"))

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype="int64")

    data: dict[str, Any] = {"bucket": cat(out_b).astype("float64") * width}
    if "type" in keys:
        data["type"] = cat(out_type)
    data["outcome"] = cat(out_status)
    data["count"] = cat(out_n)
    frame = pd.DataFrame(data)
    cols = ["bucket", *keys, "outcome"]
    frame = frame.groupby(cols, sort=True)["count"].sum().reset_index()
    frame["count"] = frame["count"].astype("int64")
    return frame, ({"type": types} if "type" in keys else {})


def _scan_counts(
    db: Store,
    *,
    level: str,
    keys: list[str],
    ranges: list[tuple[float | None, float, bool]],
    outcomes: tuple[str, ...],
    width: float,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Count the finished rows in `ranges` per (bucket, by-codes..., outcome code).

    Where the store has an index in finish order that covers the read (attempts of a
    native store from schema version 4: ``attempts_finished``), rows are read in finish
    order, in batches that end at a finish time; otherwise in keyset batches in table
    order.
    """
    sqlite_rowid = db.dialect == "sqlite" and db.layout == "native"
    native = db.layout == "native"
    if level == "task":
        table, status_col, code = "tasks", "status", _STATUS_CODE.format(col="status")
        worker_col, type_col, join = "IFNULL(worker_key, -1)", "type", ""
        fin_col, order = "finished_at", ["id"]
        by_time = False  # finish order is only cheaper by status and type: _pair_counts
    else:
        table, status_col, code = "attempts a", "a.outcome", _OUTCOME_CODE.format(col="a.outcome")
        worker_col, type_col, fin_col = "a.worker_key", "t.type", "a.finished_at"
        join = " JOIN tasks t ON t.id = a.task_id" if "type" in keys else ""
        # Attempts in table order where the table has one; else by their primary key.
        order = ["a.rowid"] if sqlite_rowid else ["a.task_id", "a.attempt"]
        by_time = native and db.schema_version >= COUNTERS_VERSION
    if by_time:
        order = []
    in_sql = ", ".join("?" * len(outcomes))
    wanted_codes = np.array(
        [(TASK_STATUSES if level == "task" else OUTCOMES).index(o) for o in outcomes],
        dtype="int64",
    )
    names: dict[str, list[str]] = {}
    lut: np.ndarray | None = None
    if "worker_id" in keys:
        lut, names["worker_id"] = _worker_lookup(db)

    def batches(
        select: list[str], cols: dict[str, str], params: list[Any]
    ) -> Iterator[dict[str, Any]]:
        # The unary + keeps the planner off the (status, type) index, on the table's own
        # order. In finish order the statuses are filtered by their codes afterwards
        # (cheaper than SQLite's IN on text, and the index holds them anyway).
        filters: list[Any] = list(outcomes)
        if by_time:
            head = f"SELECT {', '.join(select)} FROM {table}{join} WHERE 1 = 1"
            filters = []
        else:
            head = (
                f"SELECT {', '.join(select)} FROM {table}{join}"
                f" WHERE +{status_col} IN ({in_sql})"
            )
        action = f"read finished {table}"
        for start, end, closed in ranges:
            window = f" AND {fin_col} {'<=' if closed else '<'} ?"
            if not by_time:
                # Here the + keeps SQLite off the finish-ordered index, whose rows would
                # be sorted into table order again for every batch.
                window = f" AND +{fin_col} {'<=' if closed else '<'} ?"
                lower = "" if start is None else f" AND +{fin_col} >= ?"
                bounds = [end] if start is None else [end, start]
                after = order[0] + " > ?" if len(order) == 1 else f"({', '.join(order)}) > (?, ?)"
                last: list[Any] | None = None
                while True:
                    sql = head + window + lower + ("" if last is None else f" AND {after}")
                    batch = db.read_columns(
                        f"{sql} ORDER BY {', '.join(order)} LIMIT ?",
                        [*params, *filters, *bounds, *(last or []), _ROWS_PER_BATCH],
                        columns=cols,
                        action=action,
                    )
                    n = len(batch["at"])
                    if n:
                        last = [int(batch[f"k{i}"][-1]) for i in range(len(order))]
                        yield batch
                    if n < _ROWS_PER_BATCH:
                        break
                continue
            # Finish order: a batch ends before its last moment and the next starts
            # there, so rows sharing a moment are never split (nor read twice).
            lower_bound = start
            while True:
                lower = "" if lower_bound is None else f" AND {fin_col} >= ?"
                bounds = [end] if lower_bound is None else [end, lower_bound]
                batch = db.read_columns(
                    f"{head}{window}{lower} ORDER BY {fin_col} LIMIT ?",
                    [*params, *filters, *bounds, _ROWS_PER_BATCH],
                    columns=cols,
                    action=action,
                )
                at = batch["at"]
                if len(at) < _ROWS_PER_BATCH:
                    if len(at):
                        yield batch
                    break
                edge = float(at[-1])
                keep = at < edge
                if keep.any():
                    yield {name: values[keep] for name, values in batch.items()}
                    lower_bound = edge
                    continue
                # A whole batch finished at one moment: read that moment in one go.
                yield db.read_columns(
                    f"{head} AND {fin_col} = ?",
                    [*params, *filters, edge],
                    columns=cols,
                    action=action,
                )
                lower_bound = math.nextafter(edge, math.inf)
                if lower_bound > end or (lower_bound == end and not closed):
                    break

    def scan(expr: _TypeExpr | None) -> tuple[list[Any], list[str]]:
        select = [*order, fin_col, code]
        cols = {f"k{i}": "int64" for i in range(len(order))}
        cols.update({"at": "float64", "outcome": "int64"})
        params: list[Any] = []
        if expr is not None:
            select.append(f"{expr.sql} AS type")
            cols["type"] = expr.kind
            params.extend(expr.params)
        if "worker_id" in keys:
            select.append(worker_col)
            cols["worker"] = "int64"
        text_codes: dict[str, int] = {}
        parts: list[Any] = []
        for batch in batches(select, cols, params):
            if by_time:
                wanted = np.isin(batch["outcome"], wanted_codes)
                if not wanted.all():
                    batch = {name: values[wanted] for name, values in batch.items()}
                if not len(batch["at"]):
                    continue
            by_key: dict[str, tuple[np.ndarray, int]] = {}
            if expr is not None:
                values = batch["type"]
                if expr.cats is not None:
                    if (values < 0).any():  # a type written after the types were listed
                        raise _Retry
                    by_key["type"] = (values, len(expr.cats) + 1)
                else:
                    local, uniques = pd.factorize(values)
                    glob = np.array(
                        [text_codes.setdefault(str(u), len(text_codes)) for u in uniques],
                        dtype="int64",
                    )
                    local = local.astype("int64")
                    type_codes = np.where(local >= 0, glob[local] if len(glob) else -1, -1)
                    by_key["type"] = (type_codes, len(text_codes) + 1)
            if lut is not None:
                by_key["worker_id"] = (
                    _worker_codes(batch["worker"], lut),
                    len(names["worker_id"]) + 1,
                )
            codes = [by_key[key][0] for key in keys]
            sizes = [by_key[key][1] for key in keys]
            codes.append(batch["outcome"])
            sizes.append(_N_CODES)
            parts.append(_batch_counts(_bucket_index(batch["at"], width), codes, sizes))
        if expr is not None and expr.cats is None:
            # Codes in order of the sorted names, as a sorted factorize gives them.
            seen = sorted(text_codes)
            rank = np.full(len(text_codes) + 1, -1, dtype="int64")
            for i, name in enumerate(seen):
                rank[text_codes[name]] = i
            at = keys.index("type")
            for _bs, cs, _counts in parts:
                cs[at] = rank[cs[at]]
            return parts, seen
        return parts, [] if expr is None or expr.cats is None else expr.cats

    if "type" in keys:
        expr = _type_expr(db, type_col)
        try:
            parts, names["type"] = scan(expr)
        except _Retry:
            parts, names["type"] = scan(_TypeExpr(type_col, [], None))
    else:
        parts, _unused = scan(None)
    code_cols = [*keys, "outcome"]
    if not parts:
        frame = pd.DataFrame({c: np.empty(0, dtype="int64") for c in ["b", *code_cols]})
        frame["count"] = np.empty(0, dtype="int64")
    else:
        data: dict[str, Any] = {"b": np.concatenate([p[0] for p in parts])}
        for i, col in enumerate(code_cols):
            data[col] = np.concatenate([p[1][i] for p in parts])
        data["count"] = np.concatenate([p[2] for p in parts])
        frame = pd.DataFrame(data)
        # A group can span batches; text type codes were renumbered after counting.
        frame = frame.groupby(["b", *code_cols], sort=True)["count"].sum().reset_index()
    frame.insert(0, "bucket", frame.pop("b").to_numpy().astype("float64") * width)
    frame["count"] = frame["count"].astype("int64")
    return frame, names


def _group_codes(
    bucket: np.ndarray, keys: list[str], decoded: dict[str, tuple[np.ndarray, list[str]]]
) -> pd.DataFrame:
    data: dict[str, Any] = {"bucket": bucket}
    for key in keys:
        data[key] = decoded[key][0]
    return pd.DataFrame(data)


def _finish_by(frame: pd.DataFrame, keys: list[str], names: dict[str, list[str]]) -> pd.DataFrame:
    """Turn integer ``bucket`` seconds and by-codes into UTC timestamps and categories."""
    out = frame.copy()
    out["bucket"] = as_utc(out["bucket"].to_numpy(), index=out.index)
    for key in keys:
        out[key] = _categorical(out[key].to_numpy(), names[key])
    return out


#: The bucket width of ``freq=None``: a whole number of hours (so the hourly tiers still
#: serve it), so wide that every supported time falls in bucket 0 or, before 1970, -1.
_WHOLE_S = float(HOUR_S * (1 << 32))


def _width_of(freq: Any) -> float:
    return _WHOLE_S if freq is None else _freq_seconds(freq)


def _first_finish(db: Store, *, level: str, hi: float, outcomes: tuple[str, ...]) -> float | None:
    """The earliest finish at or before `hi` that :func:`_finished_counts` counts.

    From the raw rows, unless the hourly tiers hold an earlier hour than the raw rows'
    first finish (those rows were deleted by ``prune(finished_keep=...)``): then the
    start of that hour, the closest the tiers know.
    """
    marks = ", ".join("?" * len(outcomes))
    if level == "task" and db.layout == "native" and db.schema_version >= TIERS_VERSION:
        # One index seek per (status, type) pair of ``tasks_finished``.
        found = [
            db.query(
                "SELECT min(finished_at) FROM tasks WHERE status = ? AND type = ?"
                " AND finished_at IS NOT NULL AND finished_at <= ?",
                (status, type_, hi),
                action="find the first finish",
            )[0][0]
            for status, type_ in finished_pairs(db, outcomes)
        ]
        values = [float(v) for v in found if v is not None]
        raw = min(values) if values else None
    else:
        table, column = ("tasks", "status") if level == "task" else ("attempts", "outcome")
        value = db.query(
            f"SELECT min(finished_at) FROM {table} WHERE {column} IN ({marks})"
            " AND finished_at <= ?",
            (*outcomes, hi),
            action="find the first finish",
        )[0][0]
        raw = None if value is None else float(value)
    plan = _tier_plan(db, level=level, keys=[], lo=None, hi=hi, width=_WHOLE_S)
    if plan is None:
        return raw
    table, column, count = (
        ("task_hours", "status", "tasks")
        if level == "task"
        else ("attempt_hours", "outcome", "attempts")
    )
    hour = db.query(
        f"SELECT min(hour) FROM {table} WHERE hour < ? AND {column} IN ({marks}) AND {count} > 0",
        (plan.end, *outcomes),
        action=f"find the first hour in {table}",
    )[0][0]
    if hour is None:
        return raw
    start = float(int(hour) * HOUR_S)
    return raw if raw is not None and raw < start + HOUR_S else start


def _one_bucket(counts: pd.DataFrame, keys: list[str], *, start: float | None) -> pd.DataFrame:
    """Counts of the whole window in one bucket that starts at `start`."""
    cols = [*keys, "outcome"]
    merged = counts.groupby(cols, sort=True)["count"].sum().reset_index()
    merged.insert(0, "bucket", np.full(len(merged), np.nan if start is None else start))
    merged["count"] = merged["count"].astype("int64")
    return merged


@share_docs
def success_rate(
    db: Store,
    *,
    freq: Any = "1h",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
    level: str = "task",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Share of finishes that succeeded, per time bucket, with a Wilson score interval.

    Parameters
    ----------
    {db}
    freq : str, float or None, default "1h"
        Bucket width (a duration such as ``"5min"``, ``"1h"``, ``"1d"``). None: one row
        per group for the whole window, whose ``bucket`` is the window's start
        (`since`), or, when `since` is None, the first finish counted (the start of its
        hour when only the hourly summary still holds it, after
        ``prune(finished_keep=...)``).
    by : None, "type", "worker_id" or a list of them
        Split each bucket by task type and/or by worker (the worker of the final
        attempt at ``level="task"``, the attempt's worker at ``level="attempt"``).
    {since_until}
        Only finishes in ``[since, until]`` count.
    {now}
    level : {"task", "attempt"}, default "task"
        ``"task"`` counts the final outcome of each task finished in the bucket;
        ``"attempt"`` counts every finished attempt, an abandoned attempt counting as
        failed. Cancelled tasks and attempts are left out of the rate.
    confidence : float, default 0.95
        Coverage of the interval.

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC, bucket start), the `by` columns (category), ``completed``,
        ``failed``, ``total`` (int64), ``rate``, ``ci_low``, ``ci_high`` (float). Buckets
        with no finishes are omitted, so ``total`` is always positive.

    Examples
    --------
    >>> import qanalytics as qa
    >>> clock = qa.FakeClock("2024-01-01T00:00:00Z")
    >>> with qa.connect(":memory:", clock=clock) as db:
    ...     _ = qa.register_worker(db, "w1")
    ...     for ok in (True, True, False):
    ...         task = qa.enqueue(db, "email")
    ...         _ = qa.claim(db, "w1")
    ...         clock.advance("1min")
    ...         _ = qa.complete(db, task) if ok else qa.fail(db, task, "boom", retry=False)
    ...     qa.success_rate(db, freq=None, by="type")[["bucket", "type", "completed", "total"]]
                         bucket   type  completed  total
    0 2024-01-01 00:01:00+00:00  email          2      3
    """
    width = _width_of(freq)
    keys = _by_list(by, ("type", "worker_id"))
    if level not in ("task", "attempt"):
        raise ValueError(f"level={level!r} must be 'task' or 'attempt'")
    if level == "attempt":
        db.require("attempt_history", "success_rate(level='attempt')")
    z = _z_score(confidence)
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update(dict.fromkeys(("completed", "failed", "total"), "int64"))
    columns.update(dict.fromkeys(("rate", "ci_low", "ci_high"), "float64"))
    outcomes = ("completed", "failed") if level == "task" else ("completed", "failed", "abandoned")
    counts, names = _finished_counts(
        db, level=level, keys=keys, lo=lo, hi=hi, outcomes=outcomes, width=width
    )
    if counts.empty:
        return empty_frame(columns)
    if freq is None:
        start = lo if lo is not None else _first_finish(db, level=level, hi=hi, outcomes=outcomes)
        counts = _one_bucket(counts, keys, start=start)
    done = _COMPLETED if level == "task" else _O_COMPLETED
    counts["ok"] = np.where(counts["outcome"].to_numpy() == done, counts["count"].to_numpy(), 0)
    agg = counts.groupby(["bucket", *keys], sort=True)[["ok", "count"]].sum().reset_index()
    completed = agg["ok"].to_numpy().astype("int64")
    total = agg["count"].to_numpy().astype("int64")
    rate, low, high = _wilson(completed, total, z)
    result = agg[["bucket", *keys]].copy()
    result["completed"] = completed
    result["failed"] = total - completed
    result["total"] = total
    result["rate"], result["ci_low"], result["ci_high"] = rate, low, high
    return _finish_by(result, keys, names)[list(columns)]


#: The final statuses :func:`throughput` counts.
_THROUGHPUT_STATUSES = ("completed", "failed", "cancelled")


@share_docs
def throughput(
    db: Store,
    *,
    freq: Any = "1h",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Tasks finished per time bucket, by final outcome.

    Parameters
    ----------
    {db}
    freq : str, float or None, default "1h"
        Bucket width. None: one row per group and outcome for the whole window, whose
        ``bucket`` is the window's start (`since`), or, when `since` is None, the first
        finish counted (as for :func:`success_rate`).
    by : None, "type", "worker_id" or a list of them
        Also split by task type and/or by the worker of the final attempt (missing for
        a task cancelled before any claim or after a retry was queued).
    {since_until}
        Only tasks finished in ``[since, until]`` count.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC), the `by` columns, ``outcome`` (category: completed, failed,
        cancelled), ``count`` (int64); only combinations with at least one finish.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.throughput(db).columns.tolist()
    ['bucket', 'outcome', 'count']
    """
    width = _width_of(freq)
    keys = _by_list(by, ("type", "worker_id"))
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update({"outcome": OUTCOME_DTYPE, "count": "int64"})
    result, names = _finished_counts(
        db,
        level="task",
        keys=keys,
        lo=lo,
        hi=hi,
        outcomes=_THROUGHPUT_STATUSES,
        width=width,
    )
    if result.empty:
        return empty_frame(columns)
    if freq is None:
        start = lo
        if start is None:
            start = _first_finish(db, level="task", hi=hi, outcomes=_THROUGHPUT_STATUSES)
        result = _one_bucket(result, keys, start=start)
    outcome_names = [_OUTCOME_OF_STATUS[int(c)] for c in result["outcome"].to_numpy()]
    result["outcome"] = pd.Categorical(outcome_names, dtype=OUTCOME_DTYPE)
    return _finish_by(result, keys, names)[list(columns)]


# -- depth_timeline -------------------------------------------------------------------------
def _attempt_positions(ids: np.ndarray, task_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `task_ids` in the sorted `ids`, and which were found."""
    pos = np.searchsorted(ids, task_ids)
    found = pos < len(ids)
    found[found] = ids[pos[found]] == task_ids[found]
    return pos, found


@share_docs
def depth_timeline(
    db: Store,
    *,
    freq: Any = "1min",
    by: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Queued and processing tasks at the end of each time bucket, replayed from history.

    A task is queued from its creation until its first claim, processing during each
    attempt, queued again between a failed or abandoned attempt and the next claim, and
    done once it completes, finally fails or is cancelled.

    Parameters
    ----------
    {db}
    freq : str or float, default "1min"
        Bucket width.
    by : None or "type"
        Also split by task type (every type seen so far gets a row in every bucket).
    {since_until}
        The buckets cover ``[since, until]``; `since` defaults to the first task's creation.
        Earlier events still count towards the depth.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC, bucket start), the `by` column, ``queued``, ``processing``
        (int64): the depth just before the bucket ends (at `until` for the last one).
        One row per bucket (and type), with no gaps.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.depth_timeline(db, freq="5min").columns.tolist()
    ['bucket', 'queued', 'processing']
    """
    width = _freq_seconds(freq)
    keys = _by_list(by, ("type",))
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {"bucket": UTC_DTYPE, **_by_dtypes(keys)}
    columns.update({"queued": "int64", "processing": "int64"})

    def build(expr: _TypeExpr | None) -> tuple[str, list[Any], dict[str, str]]:
        cols = {
            "id": "int64",
            "created_at": "float64",
            "finished_at": "time?",
            "status": "int64",
            "attempts": "int64",
        }
        extra, params = "", []
        if expr is not None:
            extra, params = f", {expr.sql} AS type", list(expr.params)
            cols["type"] = expr.kind
        sql = (
            "SELECT id, created_at, IFNULL(finished_at, -1.0),"
            f" {_STATUS_CODE.format(col='status')}, attempts{extra}"
            " FROM tasks WHERE created_at <= ? ORDER BY id"
        )
        return sql, [*params, hi], cols

    if keys:
        tasks, type_codes, types = _read_with_types(db, build, "type")
    else:
        sql, params, cols = build(None)
        tasks = db.read_frame(sql, params, columns=cols, action="read tasks")
        type_codes, types = np.zeros(len(tasks), dtype="int64"), [""]
    if tasks.empty:
        return empty_frame(columns)
    att = _attempt_times(db, until=hi)
    ids = tasks["id"].to_numpy()
    t_fin = tasks["finished_at"].to_numpy()
    t_status = tasks["status"].to_numpy()
    t_attempts = tasks["attempts"].to_numpy()
    pos, found = _attempt_positions(ids, att["task_id"].to_numpy())
    pos = pos[found]
    a_num = att["attempt"].to_numpy()[found]
    a_claim = att["claimed_at"].to_numpy()[found]
    a_fin = att["finished_at"].to_numpy()[found]
    a_out = att["outcome"].to_numpy()[found]
    a_closed = ~np.isnan(a_fin) & (a_fin <= hi)
    last = a_num == t_attempts[pos]
    requeued = (
        a_closed & np.isin(a_out, (_O_FAILED, _O_ABANDONED)) & ~(last & (t_status[pos] == _FAILED))
    )
    # A cancel that closed an attempt left processing; any other cancel left the queue.
    cancelled_running = np.zeros(len(ids), dtype=bool)
    cancelled_running[pos[last & (a_out == _O_CANCELLED)]] = True
    cancel_queued = (t_status == _CANCELLED) & ~np.isnan(t_fin) & (t_fin <= hi) & ~cancelled_running
    closed_fin = a_fin[a_closed]
    times = np.concatenate(
        [tasks["created_at"].to_numpy(), a_claim, closed_fin, a_fin[requeued], t_fin[cancel_queued]]
    )
    n_claim, n_close, n_req = len(a_claim), len(closed_fin), int(requeued.sum())
    d_queued = np.concatenate(
        [
            np.ones(len(ids)),
            -np.ones(n_claim),
            np.zeros(n_close),
            np.ones(n_req),
            -np.ones(int(cancel_queued.sum())),
        ]
    )
    d_proc = np.concatenate(
        [
            np.zeros(len(ids)),
            np.ones(n_claim),
            -np.ones(n_close),
            np.zeros(n_req + int(cancel_queued.sum())),
        ]
    )
    group = np.concatenate(
        [
            type_codes,
            type_codes[pos],
            type_codes[pos[a_closed]],
            type_codes[pos[requeued]],
            type_codes[cancel_queued],
        ]
    )
    first = float(tasks["created_at"].min()) if lo is None else lo
    b0, nb = _bucket_range(first, hi, width, freq)
    # An event at t shows in the depth at the end of every bucket ending after t.
    k = np.clip(np.floor((times - b0) / width), 0, nb - 1).astype("int64")
    n_groups = len(types)
    flat = group * nb + k
    size = n_groups * nb
    queued = np.rint(np.bincount(flat, weights=d_queued, minlength=size)).astype("int64")
    processing = np.rint(np.bincount(flat, weights=d_proc, minlength=size)).astype("int64")
    queued = queued.reshape(n_groups, nb).cumsum(axis=1)
    processing = processing.reshape(n_groups, nb).cumsum(axis=1)
    buckets = b0 + width * np.arange(nb, dtype="float64")
    if keys:
        # Bucket-major order: every type within a bucket, types sorted.
        order = np.argsort(np.asarray(types, dtype=object), kind="stable")
        out = pd.DataFrame(
            {
                "bucket": as_utc(np.repeat(buckets, n_groups)),
                "type": _categorical(np.tile(order, nb), types),
                "queued": queued[order].T.reshape(-1),
                "processing": processing[order].T.reshape(-1),
            }
        )
    else:
        out = pd.DataFrame(
            {"bucket": as_utc(buckets), "queued": queued[0], "processing": processing[0]}
        )
    return out[list(columns)]


# -- latency --------------------------------------------------------------------------------
@share_docs
def latency(
    db: Store,
    *,
    by: Any = "type",
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    freq: Any = None,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Quantiles of waiting and running time of finished tasks.

    The sample is the tasks that completed or finally failed in ``[since, until]``
    (cancelled tasks are left out). ``wait_s`` is from creation to the first claim;
    ``run_s`` is the final attempt, from its claim to the finish.

    Parameters
    ----------
    {db}
    by : None, "type", "worker_id" or a list of them, default "type"
        Group by task type and/or the worker of the final attempt.
    quantiles : sequence of float, default (0.5, 0.9, 0.99)
        Each in [0, 1].
    freq : str or float, optional
        Also split by time bucket of the finish.
    {since_until}
    {now}

    Returns
    -------
    pandas.DataFrame
        ``bucket`` (UTC; only with `freq`), the `by` columns, ``quantile`` (float),
        ``wait_s``, ``run_s`` (float seconds), ``count`` (int64: tasks in the group).

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.latency(db).columns.tolist()
    ['type', 'quantile', 'wait_s', 'run_s', 'count']
    """
    keys = _by_list(by, ("type", "worker_id"))
    qs = _check_quantiles(quantiles)
    width = None if freq is None else _freq_seconds(freq)
    lo, hi, _at = resolve_window(db, since, until, now)
    columns: dict[str, Any] = {} if width is None else {"bucket": UTC_DTYPE}
    columns.update(_by_dtypes(keys))
    columns.update({"quantile": "float64", "wait_s": "float64", "run_s": "float64"})
    columns["count"] = "int64"
    where, wparams = _window_sql("t.finished_at", lo, hi)

    # Without per-attempt rows only a task claimed once has a known first claim: the
    # others keep their run time and get no wait (NaN, left out of the wait quantiles).
    history = "attempt_history" in db.capabilities
    first_sql = "a.claimed_at" if history else "IFNULL(a.claimed_at, -1.0)"
    join = "JOIN" if history else "LEFT JOIN"

    def build(expr: _TypeExpr | None) -> tuple[str, list[Any], dict[str, str]]:
        started = "t.started_at" if history else "IFNULL(t.started_at, -1.0)"
        select = f"t.finished_at, t.created_at, {started}, {first_sql}"
        cols = {
            "at": "float64",
            "created": "float64",
            "started": "float64" if history else "time?",
            "first": "float64" if history else "time?",
        }
        params: list[Any] = []
        if expr is not None:
            select += f", {expr.sql} AS type"
            cols["type"] = expr.kind
            params = list(expr.params)
        if "worker_id" in keys:
            select += ", IFNULL(t.worker_key, -1)"
            cols["worker"] = "int64"
        sql = (
            f"SELECT {select} FROM tasks t {join} attempts a ON a.task_id = t.id"
            " AND a.attempt = 1"
            f" WHERE +t.status IN ('completed', 'failed') AND {where}"
        )
        return sql, [*params, *wparams], cols

    decoded: dict[str, tuple[np.ndarray, list[str]]] = {}
    if "type" in keys:
        frame, codes, cats = _read_with_types(db, build, "t.type")
        decoded["type"] = (codes, cats)
    else:
        sql, params, cols = build(None)
        frame = db.read_frame(sql, params, columns=cols, action="read finished tasks")
    if frame.empty:
        return empty_frame(columns)
    if "worker_id" in keys:
        lut, names = _worker_lookup(db)
        decoded["worker_id"] = (_worker_codes(frame["worker"].to_numpy(), lut), names)
    bucket = np.zeros(len(frame)) if width is None else _floor(frame["at"].to_numpy(), width)
    groups = _group_codes(bucket, keys, decoded)
    groups["wait_s"] = frame["first"].to_numpy() - frame["created"].to_numpy()
    groups["run_s"] = frame["at"].to_numpy() - frame["started"].to_numpy()
    grouped = groups.groupby(["bucket", *keys], sort=True)
    quant = grouped[["wait_s", "run_s"]].quantile(np.asarray(qs))
    quant.index = quant.index.set_names([*quant.index.names[:-1], "quantile"])
    quant = quant.reset_index()
    sizes = grouped.size().rename("count").reset_index()
    result = quant.merge(sizes, on=["bucket", *keys], how="left")
    result["count"] = result["count"].astype("int64")
    result["quantile"] = result["quantile"].astype("float64")
    result = _finish_by(result, keys, {k: v[1] for k, v in decoded.items()})
    return result[list(columns)].reset_index(drop=True)


# -- utilization ----------------------------------------------------------------------------
def _split_intervals(
    key: np.ndarray, start: np.ndarray, end: np.ndarray, width: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut intervals at bucket edges: (key, bucket start, seconds inside) per piece."""
    first = np.floor(start / width)
    last = np.maximum(np.ceil(end / width) - 1, first)
    n = (last - first + 1).astype("int64")
    if int(n.sum()) > 10 * MAX_BUCKETS:
        raise ValueError(
            f"freq of {width:g}s cuts the intervals into {int(n.sum()):,} pieces; use a "
            "coarser freq or a shorter window"
        )
    rep = np.repeat(np.arange(len(start)), n)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(n) - n, n)
    bucket = (first[rep] + offset) * width
    seconds = np.minimum(end[rep], bucket + width) - np.maximum(start[rep], bucket)
    return key[rep], bucket, np.maximum(seconds, 0.0)


@share_docs
def utilization(
    db: Store,
    *,
    freq: Any = "1h",
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """Per worker and time bucket: seconds busy, seconds alive, and their ratio.

    Busy time is the overlap of the worker's attempts (from claim to finish, or to
    `now` while still open) with the bucket. Alive time comes from
    :func:`qanalytics.alive_intervals` (the heartbeat history with outages removed).

    Parameters
    ----------
    {db}
    freq : str or float, default "1h"
        Bucket width.
    {since_until}
        Clip everything to ``[since, until]``.
    {now}

    Returns
    -------
    pandas.DataFrame
        ``worker_id`` (category), ``bucket`` (UTC), ``busy_s``, ``alive_s`` (float
        seconds), ``utilization`` (``busy_s / alive_s``; NaN when not alive at all in
        the bucket, and above 1 when a worker held a task through an outage). One row
        per worker and bucket in which it was busy or alive.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.utilization(db).columns.tolist()
    ['worker_id', 'bucket', 'busy_s', 'alive_s', 'utilization']
    """
    db.require("heartbeat_history", "utilization()")
    db.require("attempt_history", "utilization()")
    width = _freq_seconds(freq)
    lo, hi, at = resolve_window(db, since, until, now)
    columns = {
        "worker_id": "category",
        "bucket": UTC_DTYPE,
        "busy_s": "float64",
        "alive_s": "float64",
        "utilization": "float64",
    }
    lut, names = _worker_lookup(db)
    low = -np.inf if lo is None else lo
    where = "claimed_at <= ? AND (finished_at IS NULL OR finished_at >= ?)"
    att = db.read_frame(
        f"SELECT worker_key, claimed_at, IFNULL(finished_at, -1.0) FROM attempts WHERE {where}",
        (hi, -1e300 if lo is None else lo),
        columns={"worker": "int64", "start": "float64", "end": "time?"},
        action="read attempts",
    )
    a_end = att["end"].to_numpy()
    a_end = np.where(np.isnan(a_end) | (a_end > hi), hi, a_end)
    a_start = np.maximum(att["start"].to_numpy(), low)
    keep = a_end > a_start
    busy = _split_intervals(
        _worker_codes(att["worker"].to_numpy(), lut)[keep], a_start[keep], a_end[keep], width
    )
    alive = alive_spans(db, since=lo, until=hi, now=at)
    name_index = {name: i for i, name in enumerate(names)}
    alive_codes = np.array(
        [name_index.get(w, -1) for w in alive["worker_id"].astype(object)], dtype="int64"
    )
    a_s = alive["start"].to_numpy(dtype="float64")
    a_e = alive["end"].to_numpy(dtype="float64")
    keep = a_e > a_s
    up = _split_intervals(alive_codes[keep], a_s[keep], a_e[keep], width)
    pieces = pd.DataFrame(
        {
            "worker": np.concatenate([busy[0], up[0]]),
            "bucket": np.concatenate([busy[1], up[1]]),
            "busy_s": np.concatenate([busy[2], np.zeros(len(up[2]))]),
            "alive_s": np.concatenate([np.zeros(len(busy[2])), up[2]]),
        }
    )
    pieces = pieces[(pieces["busy_s"] > 0) | (pieces["alive_s"] > 0)]
    if pieces.empty:
        return empty_frame(columns)
    agg = pieces.groupby(["worker", "bucket"], sort=True)[["busy_s", "alive_s"]].sum()
    agg = agg.reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(agg["alive_s"] > 0, agg["busy_s"] / agg["alive_s"], np.nan)
    out = pd.DataFrame(
        {
            "worker_id": _categorical(agg["worker"].to_numpy(), names),
            "bucket": as_utc(agg["bucket"].to_numpy()),
            "busy_s": agg["busy_s"].to_numpy(dtype="float64"),
            "alive_s": agg["alive_s"].to_numpy(dtype="float64"),
            "utilization": ratio.astype("float64"),
        }
    )
    return out.sort_values(["worker_id", "bucket"], kind="stable").reset_index(drop=True)


# -- retry_outcomes -------------------------------------------------------------------------
@share_docs
def retry_outcomes(
    db: Store,
    *,
    since: Any = None,
    until: Any = None,
    now: Any = None,
) -> pd.DataFrame:
    """What happens at each attempt number, and whether retrying pays off.

    The sample is the tasks created in ``[since, until]``, with their attempts as they
    stood at `until`.

    Parameters
    ----------
    {db}
    {since_until}
    {now}
        Later claims and finishes are ignored.

    Returns
    -------
    pandas.DataFrame
        One row per attempt number ``attempt`` (int64) with ``reached`` (tasks claimed
        at least this many times), ``succeeded``, ``failed``, ``abandoned`` (int64:
        outcomes of that attempt; cancelled and still-open attempts are in none),
        ``success_rate_at_attempt`` (succeeded over succeeded + failed + abandoned) and
        ``eventual_success``: among tasks whose attempt k failed or was abandoned and
        whose fate is known (completed or finally failed), the share that completed
        later. Rates are NaN when their denominator is zero.

    Examples
    --------
    >>> import qanalytics as qa
    >>> with qa.connect(":memory:") as db:
    ...     qa.retry_outcomes(db).empty
    True
    """
    db.require("attempt_history", "retry_outcomes()")
    lo, hi, _at = resolve_window(db, since, until, now)
    columns = dict.fromkeys(("attempt", "reached", "succeeded", "failed", "abandoned"), "int64")
    columns.update({"success_rate_at_attempt": "float64", "eventual_success": "float64"})
    where, wparams = _window_sql("t.created_at", lo, hi)
    att = db.read_frame(
        "SELECT a.attempt, IFNULL(a.finished_at, -1.0),"
        f" {_OUTCOME_CODE.format(col='a.outcome')}, {_STATUS_CODE.format(col='t.status')},"
        " IFNULL(t.finished_at, -1.0) FROM attempts a JOIN tasks t ON t.id = a.task_id"
        f" WHERE {where} AND a.claimed_at <= ?",
        [*wparams, hi],
        columns={
            "attempt": "int64",
            "finished_at": "time?",
            "outcome": "int64",
            "status": "int64",
            "task_finished_at": "time?",
        },
        action="read attempts",
    )
    if att.empty:
        return empty_frame(columns)
    number = att["attempt"].to_numpy()
    fin = att["finished_at"].to_numpy()
    outcome = np.where(~np.isnan(fin) & (fin <= hi), att["outcome"].to_numpy(), -1)
    t_fin = att["task_finished_at"].to_numpy()
    fate = np.where(~np.isnan(t_fin) & (t_fin <= hi), att["status"].to_numpy(), -1)
    size = int(number.max()) + 1

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(number[mask], minlength=size)[1:].astype("int64")

    reached = count(np.ones(len(number), dtype=bool))
    succeeded = count(outcome == _O_COMPLETED)
    failed = count(outcome == _O_FAILED)
    abandoned = count(outcome == _O_ABANDONED)
    setback = (outcome == _O_FAILED) | (outcome == _O_ABANDONED)
    known = setback & ((fate == _COMPLETED) | (fate == _FAILED))
    recovered = count(known & (fate == _COMPLETED))
    known_n = count(known)
    decided = succeeded + failed + abandoned
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_at = np.where(decided > 0, succeeded / decided, np.nan)
        eventual = np.where(known_n > 0, recovered / known_n, np.nan)
    out = pd.DataFrame(
        {
            "attempt": np.arange(1, size, dtype="int64"),
            "reached": reached,
            "succeeded": succeeded,
            "failed": failed,
            "abandoned": abandoned,
            "success_rate_at_attempt": rate_at.astype("float64"),
            "eventual_success": eventual.astype("float64"),
        }
    )
    return out[reached > 0].reset_index(drop=True)

"""The Celery recorder against a real Redis server and real Celery worker processes.

One recorded story, run once for the module: a recorder (``qanalytics record celery``)
listens while two workers run tasks that succeed, fail and retry; the recorder is stopped
with SIGTERM and restarted while a task runs; then one worker is killed with SIGKILL in the
middle of a task and the other stops cleanly. The tests compare the store with Celery's
own results. Needs Debian's ``redis-server`` (``.ci/run`` installs it) and the ``celery``
extra; without them the module is skipped, saying which is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import qanalytics as qa
from qanalytics.record.celery import from_celery

REDIS_SERVER = shutil.which("redis-server")
try:
    import celery  # noqa: F401
    import redis as redis_client
except ImportError:  # pragma: no cover - the dev extra installs both
    redis_client = None

pytestmark = [
    pytest.mark.skipif(
        REDIS_SERVER is None,
        reason="redis-server is not installed (apt-get install redis-server; .ci/run does)",
    ),
    pytest.mark.skipif(
        redis_client is None, reason="celery and redis are not installed: pip install -e '.[dev]'"
    ),
]

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_S = 1  # the workers' --heartbeat-interval (whole seconds)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `condition` until it returns something truthy; fail saying `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    port = free_port()
    assert REDIS_SERVER is not None
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=(folder / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis_client.Redis.from_url(url)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis_client.ConnectionError:
                return False

        wait_for(answers, "redis-server to answer", timeout=10)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Fleet:
    """The processes of one story: recorders and workers, all stopped at the end."""

    def __init__(self, folder: Path, broker: str, db: Path) -> None:
        self.folder, self.broker, self.db = folder, broker, db
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(ROOT / "tests"), self.env.get("PYTHONPATH", "")]
        )
        self.env["QA_TEST_BROKER"] = broker
        self.procs: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"{name}.log").open("ab")
        # A session of its own, so a worker and its pool processes can be killed together.
        proc = subprocess.Popen(
            [sys.executable, *args], env=self.env, cwd=self.folder, stdout=log, stderr=log,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def recorder(self, name: str) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            ["-m", "qanalytics", "record", "celery", "--broker", self.broker, "--db",
             str(self.db), "--flush-interval", "0.2"],
        )

    def worker(
        self, name: str, pool: str = "threads", host: str = "fleet"
    ) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            ["-m", "celery", "-A", "celery_fleet_app", "worker", "-E", "-P", pool,
             *([] if pool == "solo" else ["-c", "2"]), "-n", f"{name}@{host}",
             "-Q", f"celery,{name}", "--heartbeat-interval", str(HEARTBEAT_S),
             "--without-gossip", "--without-mingle", "-l", "WARNING"],
        )

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its session: pool processes too
                proc.wait()


def read(db: Path, fn: Callable[[qa.Store], Any]) -> Any:
    """Run `fn` on a read-only store, or return None while the recorder is still creating it."""
    if not db.exists():
        return None
    try:
        store = qa.connect(db, readonly=True)
    except qa.SchemaError:
        return None  # the file exists, its schema is being written
    with store:
        return fn(store)


def coverage(store: qa.Store) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in store.query(
            "SELECT started_at, last_seen_at, ended_at FROM recorder_coverage ORDER BY id"
        )
    ]


def heard_after(store: qa.Store, at: float) -> bool:
    return bool(store.query("SELECT count(*) FROM heartbeats WHERE at > ?", (at,))[0][0])


def task_states(store: qa.Store) -> dict[str, str]:
    frame = qa.tasks(store)
    return dict(zip(frame["external_id"], frame["status"].astype(str), strict=True))


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("celery-fleet")
    db = folder / "fleet.db"
    with redis_server(folder) as broker:
        os.environ["QA_TEST_BROKER"] = broker
        sys.path.insert(0, str(ROOT / "tests"))
        import celery_fleet_app as tasks

        tasks.app.conf.broker_url = broker
        tasks.app.conf.result_backend = broker
        fleet = Fleet(folder, broker, db)
        out: dict[str, Any] = {"db": db, "fleet": fleet}
        try:
            _run_story(fleet, tasks, out)
            yield out
        finally:
            fleet.stop_all()
            sys.path.remove(str(ROOT / "tests"))
            with contextlib.suppress(Exception):
                tasks.app.close()


def _run_story(fleet: Fleet, tasks: Any, out: dict[str, Any]) -> None:
    db = fleet.db
    # 1. The recorder listens before the fleet starts.
    first = fleet.recorder("recorder-1")
    wait_for(lambda: read(db, coverage), "the recorder to start listening")
    w1, w2 = fleet.worker("w1"), fleet.worker("w2")
    out["w2_pid"] = w2.pid

    def both_registered() -> bool:
        frame = read(db, lambda s: qa.workers(s))
        return frame is not None and {"w1@fleet", "w2@fleet"} <= set(frame["worker_id"])

    wait_for(both_registered, "both workers to come online")

    # 2. Tasks that succeed, fail, retry then succeed, and retry until they fail.
    sent = (
        [tasks.add.delay(i, i) for i in range(6)]
        + [tasks.boom.delay(f"bad input {i}") for i in range(3)]
        + [tasks.flaky.delay(1) for _ in range(2)]
        + [tasks.flaky.delay(5)]
    )
    for result in sent:
        result.get(timeout=90, propagate=False)
    celery_states = {r.id: r.state for r in sent}
    out["celery_states"] = celery_states
    out["retry_once"] = [r.id for r in sent[9:11]]
    out["retry_out"] = sent[11].id

    def recorded_all() -> bool:
        states = read(db, task_states) or {}
        return all(states.get(i) in ("completed", "failed") for i in celery_states)

    wait_for(recorded_all, "the recorder to record every result")

    # 3. Stop the recorder; a task starts while nobody listens and ends after the restart.
    first.send_signal(signal.SIGTERM)
    out["first_exit"] = first.wait(timeout=60)
    out["first_log"] = fleet.log("recorder-1")
    unseen = [tasks.add.delay(100, i) for i in range(2)]
    for result in unseen:
        result.get(timeout=90)
    out["unseen"] = [r.id for r in unseen]
    marker = fleet.folder / "mid-flight.started"
    release = fleet.folder / "mid-flight.release"
    mid = tasks.sleepy.apply_async((str(marker), 30.0, str(release)), queue="w1")
    wait_for(marker.exists, "the mid-flight task to start")
    out["mid_started"] = marker.stat().st_mtime
    second = fleet.recorder("recorder-2")
    wait_for(lambda: len(read(db, coverage) or []) == 2, "the recorder to listen again")
    # Listening starts before the broker has the subscription in place; a heartbeat heard
    # after the restart proves events reach the recorder, so the finish cannot be missed.
    restarted = read(db, coverage)[1][0]
    wait_for(
        lambda: read(db, lambda s: heard_after(s, restarted)),
        "the restarted recorder to hear a heartbeat",
    )
    release.touch()
    mid.get(timeout=90)
    out["mid"] = mid.id
    wait_for(lambda: (read(db, task_states) or {}).get(mid.id) == "completed",
             "the mid-flight task to be recorded")

    # 4. w2 is killed with SIGKILL in the middle of a task; w1 stops cleanly.
    killed_marker = fleet.folder / "killed.started"
    doomed = tasks.sleepy.apply_async((str(killed_marker), 60.0), queue="w2")
    out["doomed"] = doomed.id

    def beat_while_running(store: qa.Store) -> bool:
        frame = qa.tasks(store).set_index("external_id")
        if doomed.id not in frame.index or frame.loc[doomed.id, "status"] != "processing":
            return False
        beats = qa.heartbeats(store, workers=["w2@fleet"])
        return bool((beats["task_id"] == frame.loc[doomed.id, "id"]).any())

    wait_for(lambda: read(db, beat_while_running), "w2 to beat while running the doomed task")
    w2.send_signal(signal.SIGKILL)
    w2.wait(timeout=10)
    out["killed_at"] = time.time()
    w1.send_signal(signal.SIGTERM)
    out["w1_exit"] = w1.wait(timeout=60)

    def w1_removed_w2_stale() -> bool:
        frame = read(
            db, lambda s: qa.workers(s, active_within="2s", stale_after="4s", include_removed=True)
        )
        if frame is None:
            return False
        state = dict(zip(frame["worker_id"], frame["state"].astype(str), strict=True))
        if state.get("w1@fleet") != "removed" or state.get("w2@fleet") != "stale":
            return False
        # The silence must also outlast the outage threshold (3x w2's median beat gap).
        out = read(db, lambda s: qa.outages(s))
        return bool((out["ongoing"] & (out["worker_id"] == "w2@fleet")).any())

    wait_for(w1_removed_w2_stale, "w1 removed, w2 stale with an ongoing outage", timeout=90)
    second.send_signal(signal.SIGTERM)
    out["second_exit"] = second.wait(timeout=60)
    out["second_log"] = fleet.log("recorder-2")


def test_recorders_exit_cleanly_on_sigterm(story: dict[str, Any]) -> None:
    assert story["first_exit"] == 0, story["first_log"]
    assert story["second_exit"] == 0, story["second_log"]
    assert "Stopped:" in story["first_log"] and "Traceback" not in story["first_log"]
    with qa.connect(story["db"], readonly=True) as db:
        periods = coverage(db)
    assert len(periods) == 2
    for started, last_seen, ended in periods:
        assert ended is not None and started <= last_seen == ended
    assert periods[0][2] < periods[1][0]  # the restart left a gap


def test_counts_equal_celerys_own_results(story: dict[str, Any]) -> None:
    states = story["celery_states"]
    with qa.connect(story["db"], readonly=True) as db:
        frame = qa.tasks(db).set_index("external_id")
    seen = frame.loc[list(states)]
    expected = {"SUCCESS": "completed", "FAILURE": "failed"}
    assert {i: expected[s] for i, s in states.items()} == seen["status"].astype(str).to_dict()
    assert sum(s == "SUCCESS" for s in states.values()) == 6 + 2  # adds, flaky(1) x2
    assert sum(s == "FAILURE" for s in states.values()) == 3 + 1  # boom x3, flaky(5)
    assert set(seen["type"].astype(str)) == {
        "celery_fleet_app.add", "celery_fleet_app.boom", "celery_fleet_app.flaky"
    }
    boom = seen[seen["type"] == "celery_fleet_app.boom"]
    assert boom["error"].str.startswith("ValueError('bad input").all()
    # Nothing was recorded while no recorder listened.
    assert not set(story["unseen"]) & set(frame.index)


def test_retries_are_attempts(story: dict[str, Any]) -> None:
    with qa.connect(story["db"], readonly=True) as db:
        tasks = qa.tasks(db).set_index("external_id")
        attempts = qa.attempts(db)
    for task_id in story["retry_once"]:
        rows = attempts[attempts["task_id"] == tasks.loc[task_id, "id"]]
        assert rows["outcome"].astype(str).tolist() == ["failed", "completed"]
        assert rows["error"].iloc[0] == "RuntimeError('try 0 failed')"
    rows = attempts[attempts["task_id"] == tasks.loc[story["retry_out"], "id"]]
    # max_retries=2: three tries, the last failure final.
    assert rows["outcome"].astype(str).tolist() == ["failed", "failed", "failed"]
    assert tasks.loc[story["retry_out"], "status"] == "failed"
    # Every other task ran once.
    once = [i for i in story["celery_states"] if i not in story["retry_once"]]
    once.remove(story["retry_out"])
    assert (tasks.loc[once, "attempts"] == 1).all()


def test_a_task_first_seen_mid_flight(story: dict[str, Any]) -> None:
    with qa.connect(story["db"], readonly=True) as db:
        row = qa.tasks(db).set_index("external_id").loc[story["mid"]]
    # Its receipt and start happened while the recorder was down: only the finish was seen.
    assert row["status"] == "completed" and row["type"] == "unknown"
    # Its start is dated from Celery's runtime: when the task itself said it started.
    assert row["started_at"].timestamp() == pytest.approx(story["mid_started"], abs=0.5)
    assert row["run_s"] > 0
    assert row["worker_id"] == "w1@fleet"


def test_killed_worker_is_stale_with_an_ongoing_outage_holding_its_task(
    story: dict[str, Any],
) -> None:
    with qa.connect(story["db"], readonly=True) as db:
        end = coverage(db)[-1][2]
        workers = qa.workers(db, now=end, active_within="2s", stale_after="4s",
                             include_removed=True).set_index("worker_id")
        doomed = qa.tasks(db, now=end).set_index("external_id").loc[story["doomed"]]
        outages = qa.outages(db, now=end)
        beats = qa.heartbeats(db, workers=["w2@fleet"], now=end)
    w2 = workers.loc["w2@fleet"]
    assert w2["state"] == "stale" and w2["cap_pid"] == story["w2_pid"]
    assert w2["current_task_id"] == doomed["id"]
    assert doomed["status"] == "processing" and doomed["worker_id"] == "w2@fleet"
    ongoing = outages[outages["ongoing"]]
    assert ongoing["worker_id"].astype(str).tolist() == ["w2@fleet"]
    assert ongoing["start"].iloc[0] == beats["at"].max()  # its last beat
    assert ongoing["tasks_in_flight"].iloc[0] == [doomed["id"]]
    assert beats["at"].max().timestamp() <= story["killed_at"]


def test_clean_shutdown_removes_the_worker(story: dict[str, Any]) -> None:
    assert story["w1_exit"] == 0
    with qa.connect(story["db"], readonly=True) as db:
        events = qa.worker_events(db, workers=["w1@fleet"])
        w1 = qa.workers(db, include_removed=True).set_index("worker_id").loc["w1@fleet"]
    assert events["event"].astype(str).tolist() == ["registered", "removed"]
    assert w1["state"] == "removed"
    assert w1["cap_sw_ident"] == "py-celery" and w1["cap_freq"] == float(HEARTBEAT_S)
    assert {"hostname", "pid", "freq", "sw_ident", "sw_ver", "sw_sys"} <= set(w1["capabilities"])


# -- exact: a prefork and solo fleet against Celery's own State and result backend ---------

RUNS = 3  # the story, run this many times against one fleet


class Reference:
    """Celery's own view of the fleet: an ``events.state.State`` fed by a receiver of its
    own in this process, and every raw event it heard."""

    def __init__(self, app: Any) -> None:
        from celery.events.receiver import EventReceiver
        from celery.events.state import State

        self.state = State()
        self.events: list[dict[str, Any]] = []
        self._app = app
        self._receiver_class = EventReceiver
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._receiver: Any = None

    def _on_event(self, event: dict[str, Any]) -> None:
        self.events.append(dict(event))
        self.state.event(event)

    def _run(self) -> None:
        class Receiver(self._receiver_class):  # type: ignore[name-defined,misc]
            def event_from_message(self, body: Any, localize: bool = True, **kw: Any) -> Any:
                return super().event_from_message(body, localize=False, **kw)

        with self._app.connection_for_read() as conn:
            self._receiver = Receiver(conn, handlers={"*": self._on_event}, app=self._app)
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)

    def heard(self, kind: str, **fields: Any) -> bool:
        return any(
            e["type"] == kind and all(e.get(k) == v for k, v in fields.items())
            for e in list(self.events)
        )


def _final(store: qa.Store, ids: list[str]) -> bool:
    states = task_states(store)
    return all(states.get(i) in ("completed", "failed", "cancelled") for i in ids)


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("celery-exact")
    db = folder / "exact.db"
    with redis_server(folder) as broker:
        os.environ["QA_TEST_BROKER"] = broker
        sys.path.insert(0, str(ROOT / "tests"))
        import celery_fleet_app

        # A fresh application on this fixture's broker (another fixture may have closed
        # the one made at first import).
        tasks = importlib.reload(celery_fleet_app)
        tasks.app.conf.broker_url = broker
        tasks.app.conf.result_backend = broker
        fleet = Fleet(folder, broker, db)
        ref = Reference(tasks.app)
        out: dict[str, Any] = {"db": db, "ref": ref, "tasks": tasks, "killed": []}
        try:
            _run_exact(fleet, tasks, ref, out)
            yield out
        finally:
            ref.stop()
            fleet.stop_all()
            sys.path.remove(str(ROOT / "tests"))
            with contextlib.suppress(Exception):
                tasks.app.close()


def _run_exact(fleet: Fleet, tasks: Any, ref: Reference, out: dict[str, Any]) -> None:
    db = fleet.db
    ref.start()
    recorder = fleet.recorder("exact-recorder-0")
    wait_for(lambda: read(db, coverage), "the recorder to start listening", timeout=30)
    names = {"p1": "prefork", "p2": "prefork", "s1": "solo"}
    workers = {n: fleet.worker(n, pool, host="exact") for n, pool in names.items()}
    for n in names:
        wait_for(lambda n=n: ref.heard("worker-online", hostname=f"{n}@exact"),
                 f"{n} to come online", timeout=60)
    sent: list[Any] = []
    for run in range(RUNS):
        batch = (
            [tasks.add.delay(run, i) for i in range(6)]
            + [tasks.add.apply_async((run, i), countdown=1) for i in range(2)]  # eta
            + [tasks.boom.delay(f"bad {run}")]
            + [tasks.auto.delay(1) for _ in range(3)] + [tasks.auto.delay(5)]
            + [tasks.again.delay(1) for _ in range(3)] + [tasks.again.delay(2)]
            + [tasks.again.delay(9)]
        )
        # Revoked before it runs: held for its eta, then discarded by whoever holds it.
        early = tasks.add.apply_async((run, 99), countdown=1.5)
        early.revoke()
        # Revoked while it runs, by a signal to its pool process.
        marker = fleet.folder / f"terminated-{run}.started"
        long = tasks.sleepy.apply_async((str(marker), 30.0), queue="p1")
        wait_for(marker.exists, "the task to terminate to start", timeout=30)
        long.revoke(terminate=True, signal="SIGTERM")
        batch += [early, long]
        for result in batch:
            result.get(timeout=60, propagate=False)
            # The outcome as get() delivered it: the backend's key itself can end RETRY
            # when a retry finished before the try that published it stored RETRY.
            out.setdefault("backend", {})[result.id] = dict(result._get_task_meta())
        sent += batch
        ids = [r.id for r in sent]
        try:
            wait_for(lambda ids=ids: read(db, lambda s: _final(s, ids)),
                     "the recorder to record every result", timeout=30)
        except AssertionError as exc:
            states = read(db, task_states) or {}
            left = {i: (states.get(i), ref.state.tasks[i].name, ref.state.tasks[i].state)
                    for i in ids if states.get(i) not in ("completed", "failed", "cancelled")}
            told = {i: ([(e["type"], e.get("hostname"), e["timestamp"]) for e in ref.events
                         if e.get("uuid") == i], tasks.app.backend.get_task_meta(i)["status"])
                    for i in left}
            raise AssertionError(f"{exc}: {left} {told}") from None
        # The recorder restarts between runs; the next listening period must be open (the
        # subscription confirmed) before the next run sends anything.
        recorder.send_signal(signal.SIGTERM)
        assert recorder.wait(timeout=30) == 0, fleet.log(f"exact-recorder-{run}")
        recorder = fleet.recorder(f"exact-recorder-{run + 1}")
        wait_for(lambda run=run: len(read(db, coverage) or []) == run + 2,
                 "the recorder to listen again", timeout=30)
    # A prefork worker is killed with SIGKILL, pool processes and all, while running a task.
    marker = fleet.folder / "killed.started"
    doomed = tasks.sleepy.apply_async((str(marker), 60.0), queue="p2")
    wait_for(marker.exists, "the doomed task to start", timeout=30)
    wait_for(lambda: (read(db, task_states) or {}).get(doomed.id) == "processing",
             "the doomed task to be recorded running", timeout=30)
    os.killpg(workers["p2"].pid, signal.SIGKILL)
    workers["p2"].wait(timeout=10)
    out["killed"] = [doomed.id]
    for n in ("p1", "s1"):
        workers[n].send_signal(signal.SIGTERM)
        assert workers[n].wait(timeout=60) == 0, fleet.log(n)
    wait_for(lambda: ref.heard("worker-offline", hostname="s1@exact")
             and ref.heard("worker-offline", hostname="p1@exact"),
             "the workers to say goodbye", timeout=30)
    time.sleep(0.5)  # let the recorder's next flush carry the goodbyes (flush every 0.2 s)
    recorder.send_signal(signal.SIGTERM)
    assert recorder.wait(timeout=30) == 0
    ref.stop()
    out["sent"] = [r.id for r in sent]
    out["backend"][doomed.id] = tasks.app.backend.get_task_meta(doomed.id)


_STATUS = {"SUCCESS": "completed", "FAILURE": "failed", "REVOKED": "cancelled"}
_OUTCOME = {
    "task-succeeded": "completed",
    "task-failed": "failed",
    "task-retried": "failed",
    "task-revoked": "cancelled",
}


def _expected_attempts(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A task's attempts from the raw events: each start closed by its worker's next finish."""
    starts: dict[str, list[float]] = {}
    ends: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        if e["type"] == "task-started":
            starts.setdefault(e["hostname"], []).append(e["timestamp"])
        elif e["type"] in _OUTCOME and not (e["type"] == "task-revoked" and not e.get(
            "terminated")):
            ends.setdefault(e["hostname"], []).append(e)
    rows = []
    for host, times in starts.items():
        finishes = ends.get(host, [])
        for k, _t in enumerate(times):
            end = finishes[k] if k < len(finishes) else None
            if end is None:
                rows.append((host, None, None, None))
                continue
            outcome = _OUTCOME[end["type"]]
            # The reason a retry gives (a solo worker reports the Retry around it).
            mapped = from_celery(end)
            error = mapped.error if outcome == "failed" and mapped is not None else None
            rows.append((host, outcome, error, end["timestamp"]))
    return sorted(rows, key=lambda r: (r[0], r[3] or math.inf))


def _disagreements(out: dict[str, Any]) -> list[str]:
    ref: Reference = out["ref"]
    found: list[str] = []
    by_task: dict[str, list[dict[str, Any]]] = {}
    for e in ref.events:
        if e.get("uuid"):
            by_task.setdefault(e["uuid"], []).append(e)
    with qa.connect(out["db"], readonly=True) as store:
        tasks = qa.tasks(store).set_index("external_id")
        attempts = qa.attempts(store)
        raw = {
            r[0]: r[1:]
            for r in store.query(
                "SELECT external_id, created_at, finished_at FROM tasks"
            )
        }
        workers = qa.workers(store, include_removed=True).set_index("worker_id")
        metrics = qa.queue_metrics(store)
        periods = coverage(store)
        beats = {
            (str(r[0]), float(r[1]))
            for r in store.query(
                "SELECT w.worker_id, h.at FROM heartbeats h JOIN workers w USING (worker_key)"
            )
        }
    ids = [*out["sent"], *out["killed"]]
    for i in ids:
        st = ref.state.tasks[i]
        meta = out["backend"][i]
        if i not in tasks.index:
            found.append(f"{i} ({st.name}) not recorded")
            continue
        row = tasks.loc[i]
        want = _STATUS.get(meta["status"], "processing" if st.state == "STARTED" else "?")
        if row["status"] != want:
            found.append(f"{i} {st.name}: status {row['status']}, backend {meta['status']}")
        if row["type"] != st.name:
            found.append(f"{i}: type {row['type']}, State {st.name}")
        events = by_task[i]
        first = min(e["timestamp"] for e in events if e["type"] in ("task-sent", "task-received"))
        if raw[i][0] != first:
            found.append(f"{i}: created {raw[i][0]}, first sent/received {first}")
        if meta["status"] in ("SUCCESS", "FAILURE"):
            if row["worker_id"] != meta["worker"]:
                found.append(f"{i}: worker {row['worker_id']}, backend {meta['worker']}")
            if row["attempts"] != meta["retries"] + 1:
                found.append(f"{i}: {row['attempts']} attempts, backend retries {meta['retries']}")
            done = st.succeeded if meta["status"] == "SUCCESS" else st.failed
            if raw[i][1] != done:
                found.append(f"{i}: finished {raw[i][1]}, State {done}")
        if meta["status"] == "SUCCESS" and abs(row["run_s"] - st.runtime) > 1e-6:
            found.append(f"{i}: run_s {row['run_s']}, Celery's runtime {st.runtime}")
        if meta["status"] == "FAILURE":
            # State keeps the exception of the event it heard last, which may be a retry
            # reported late: the one task-failed and the backend's result say what failed.
            (failure,) = [e["exception"] for e in events if e["type"] == "task-failed"]
            message = str(meta["result"])  # the exception get() rebuilt
            if row["error"] != failure or message not in row["error"]:
                found.append(f"{i}: error {row['error']!r}, {failure!r}, backend {message!r}")
        if st.state == "STARTED" and row["worker_id"] != st.worker.hostname:
            found.append(f"{i}: held by {row['worker_id']}, State {st.worker.hostname}")
        mine = attempts[attempts["task_id"] == row["id"]]
        got = sorted(
            (
                str(a.worker_id),
                None if pd.isna(a.outcome) else str(a.outcome),
                a.error if str(a.outcome) == "failed" else None,
                None if pd.isna(a.finished_at) else a.finished_at.timestamp(),
            )
            for a in mine.itertuples()
        )
        got = sorted(got, key=lambda r: (r[0], r[3] or math.inf))
        expected = _expected_attempts(events)
        close = len(got) == len(expected) and all(
            g[:3] == e[:3] and (g[3] is None) == (e[3] is None)
            and (g[3] is None or abs(g[3] - e[3]) < 1e-5)
            for g, e in zip(got, expected, strict=True)
        )
        if not close:
            found.append(f"{i} {st.name}: attempts {got}, events {expected}")
    # Each worker's counters: the finishes it reported.
    for host in ("p1@exact", "p2@exact", "s1@exact"):
        hosts = [e for e in ref.events if e.get("hostname") == host and e.get("uuid") in ids]
        completed = sum(e["type"] == "task-succeeded" for e in hosts)
        failed = sum(e["type"] in ("task-failed", "task-retried") for e in hosts)
        got = workers.loc[host, ["tasks_completed", "tasks_failed"]].tolist()
        if got != [completed, failed]:
            found.append(f"{host}: counters {got}, events {[completed, failed]}")
    # Success rate and depth as Celery's backend counts them.
    statuses = [out["backend"][i]["status"] for i in out["sent"]]
    ok, bad = statuses.count("SUCCESS"), statuses.count("FAILURE")
    if metrics["success_rate"] != pytest.approx(ok / (ok + bad)):
        found.append(f"success_rate {metrics['success_rate']}, backend {ok}/{ok + bad}")
    depth = metrics["queue_depth_by_status"]
    if depth.get("queued", 0) != 0 or depth.get("processing", 0) != len(out["killed"]):
        found.append(f"queue depth {depth}")
    # Every beat stamped inside a listening period was heard.
    for e in ref.events:
        if e["type"] != "worker-heartbeat":
            continue
        inside = any(s <= e["timestamp"] <= end for s, _seen, end in periods)
        if inside and (e["hostname"], float(e["timestamp"])) not in beats:
            edges = min(
                ((e["timestamp"] - s, end - e["timestamp"]) for s, _seen, end in periods),
                key=min,
            )
            found.append(
                f"beat {e['hostname']} at {e['timestamp']} inside coverage not recorded"
                f" ({edges[0]:.4f} s after its period began, {edges[1]:.4f} s before it ended)"
            )
    return found


def test_exact_against_celerys_state_and_result_backend(exact: dict[str, Any]) -> None:
    ids = [*exact["sent"], *exact["killed"]]
    assert len(ids) == RUNS * 20 + 1
    found = _disagreements(exact)
    assert found == [], "\n".join(found)
    ref: Reference = exact["ref"]
    # How often a retry was reported after the next attempt had started (the race this
    # test exists for); printed with -s.
    late = 0
    for i in ids:
        events = sorted(
            (e for e in ref.events if e.get("uuid") == i), key=lambda e: e["timestamp"]
        )
        for k, e in enumerate(events):
            if e["type"] == "task-retried" and any(
                f["type"] == "task-started" and f["hostname"] != e["hostname"]
                for f in events[:k]
                if f["timestamp"] > min(
                    g["timestamp"] for g in events[:k]
                    if g["type"] == "task-started" and g["hostname"] == e["hostname"]
                )
            ):
                late += 1
    print(f"\n{len(ids)} tasks, {len(ref.events)} events, {late} retries reported late")

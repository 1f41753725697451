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
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import qanalytics as qa

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
        proc = subprocess.Popen(
            [sys.executable, *args], env=self.env, cwd=self.folder, stdout=log, stderr=log
        )
        self.procs.append(proc)
        return proc

    def recorder(self, name: str) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            ["-m", "qanalytics", "record", "celery", "--broker", self.broker, "--db",
             str(self.db), "--flush-interval", "0.2"],
        )

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._start(
            name,
            ["-m", "celery", "-A", "celery_fleet_app", "worker", "-E", "-P", "threads",
             "-c", "2", "-n", f"{name}@fleet", "-Q", f"celery,{name}", "--heartbeat-interval",
             str(HEARTBEAT_S), "--without-gossip", "--without-mingle", "-l", "WARNING"],
        )

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
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

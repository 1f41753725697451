"""Record a Celery fleet from its event stream: heartbeat history and task attempts.

:class:`CeleryRecorder` listens to Celery's events (the same stream Flower reads: a
``celeryev`` fanout on the broker), maps each event with :func:`from_celery`, and writes
batches with :class:`~qanalytics.write.events.EventWriter`, one transaction per
``flush_interval``. Broker I/O runs in a thread of its own, so a slow disk never makes the
recorder miss events; the store is written from the thread that called :meth:`run`.

Workers must send events: start them with ``-E`` (``--task-events``), or let the recorder
switch events on with a broadcast, as Flower does (``enable_events=True``, repeated every
``enable_events_every`` seconds for workers that start later). Producers send
``task-sent`` only with ``task_send_sent_event = True``; without it a task is created when a
worker receives it.

Needs the ``celery`` extra: ``pip install 'qanalytics[celery]'``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..errors import QAnalyticsError
from ..store import Store, connect
from ..store.postgres import redact
from ..store.schema import TIERS_VERSION
from ..upkeep.tiers import summarize
from ..write.events import ApplyResult, EventWriter, RecordedEvent

__all__ = ["CeleryRecorder", "from_celery", "record", "redact_url"]

log = logging.getLogger("qanalytics.record")

_INSTALL_HINT = "recording Celery needs the celery extra: pip install 'qanalytics[celery]'"

#: What a worker announces about itself that is kept as its capabilities.
WORKER_FIELDS = ("hostname", "pid", "freq", "sw_ident", "sw_ver", "sw_sys")

_TASK_KINDS = frozenset(
    {
        "task-sent",
        "task-received",
        "task-started",
        "task-succeeded",
        "task-failed",
        "task-retried",
        "task-revoked",
        "task-rejected",
    }
)
_WORKER_KINDS = frozenset({"worker-online", "worker-heartbeat", "worker-offline"})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _eta(value: Any) -> float | None:
    """Celery's ``eta``: an ISO 8601 string (naive means UTC), or epoch seconds."""
    if value is None:
        return None
    number = _number(value)
    if number is not None:
        return number
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


def _retry_reason(text: str | None) -> str | None:
    """The exception inside Celery's ``Retry(message, exc, when)`` repr, else `text`."""
    if text is None or not text.startswith("Retry(") or not text.endswith(")"):
        return text
    args, depth, quote, start = [], 0, "", 0
    inner = text[len("Retry(") : -1]
    for i, char in enumerate(inner):
        if quote:
            quote = "" if char == quote and inner[i - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    if len(args) == 3 and args[1] not in ("", "None"):
        return args[1]
    return text


def from_celery(event: Mapping[str, Any]) -> RecordedEvent | None:
    """Map one Celery event (a dict as Celery's ``EventReceiver`` hands it over).

    Parameters
    ----------
    event : mapping
        Celery's event fields: ``type``, ``timestamp`` (the sender's epoch seconds),
        ``hostname``; for task events ``uuid`` and, by kind, ``name``, ``eta``,
        ``retries``, ``runtime``, ``exception``, ``requeue``, ``terminated``,
        ``signum``, ``expired``; for worker events ``pid``, ``freq``, ``sw_ident``,
        ``sw_ver``, ``sw_sys``.

    Returns
    -------
    RecordedEvent or None
        None for an event this recorder does not keep (another kind, or one missing its
        type, timestamp, worker or task id).
    """
    if not isinstance(event, Mapping):
        return None
    kind = event.get("type")
    at = _number(event.get("timestamp"))
    if at is None or (kind not in _TASK_KINDS and kind not in _WORKER_KINDS):
        return None
    worker = _text(event.get("hostname"))
    if kind in _WORKER_KINDS:
        if worker is None:
            return None
        caps = {key: event[key] for key in WORKER_FIELDS if event.get(key) is not None}
        return RecordedEvent(kind=str(kind), at=at, worker=worker, capabilities=caps)
    task = _text(event.get("uuid"))
    if task is None:
        return None
    retries = event.get("retries")
    error = _text(event.get("exception"))
    if kind == "task-retried":
        error = _retry_reason(error)
    if kind == "task-revoked":
        if event.get("expired"):
            error = "revoked: expired"
        elif event.get("terminated"):
            signum = event.get("signum")
            error = "revoked: terminated" + (f" by signal {signum}" if signum else "")
        else:
            error = "revoked"
    caps = {key: event[key] for key in ("hostname", "pid") if event.get(key) is not None}
    return RecordedEvent(
        kind=str(kind),
        at=at,
        worker=worker,
        task=task,
        name=_text(event.get("name")),
        eta=_eta(event.get("eta")),
        retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else None,
        runtime=_number(event.get("runtime")),
        error=error,
        requeue=bool(event.get("requeue")),
        capabilities=caps or None,
    )


def redact_url(url: str) -> str:
    """The broker URL without its password, for messages and the coverage table.

    Both the user information (``:password@``) and a ``password`` query parameter are
    masked, as :func:`qanalytics.store.postgres.redact` does for server URLs.

    Parameters
    ----------
    url : str

    Returns
    -------
    str
    """
    # Broker URLs hide passwords where libpq URLs do: user information and ?password=.
    return redact(url)


def _celery() -> Any:
    try:
        import celery
    except ImportError as exc:
        raise QAnalyticsError(_INSTALL_HINT) from exc
    return celery


class _Marker:
    """A note from the receiver thread to the writer: listening started or stopped."""

    __slots__ = ("at", "listening", "reason")

    def __init__(self, listening: bool, at: float, reason: str = "") -> None:
        self.listening = listening
        self.at = at
        self.reason = reason


class CeleryRecorder:
    """A long-running recorder of a Celery fleet's events into a qanalytics store.

    Parameters
    ----------
    broker : str, optional
        The broker URL (``redis://host:6379/0``, ``amqp://...``); defaults to `app`'s.
    db : str, os.PathLike or Store
        The store to write: a path or URL (opened, migrated and closed by the recorder)
        or an open writable :class:`~qanalytics.Store` (left open).
    app : celery.Celery, optional
        An application to take the broker and event settings from.
    flush_interval : float, default 0.5
        Seconds between batch writes; each batch is one transaction.
    max_batch : int, default 20000
        Write early when this many events are waiting.
    enable_events : bool, default True
        Broadcast ``enable_events`` to the workers when listening starts and every
        `enable_events_every` seconds, as Flower does.
    enable_events_every : float, default 30
    clock : callable, optional
        The recorder's clock (epoch seconds) for its coverage periods; events keep their
        own timestamps. Defaults to :func:`time.time`.
    summarize_every : float or None, default 600
        Seconds between runs of :func:`qanalytics.maintenance.summarize` on the store
        (the first soon after start), so long reads of a recorded fleet stay fast; None
        never runs it.
    summarize_lag : float, default 3600
        Its `lag`: beats and finishes younger than this stay out of the tiers, so late
        events are still seen by every read.

    Examples
    --------
    >>> rec = CeleryRecorder("redis://localhost:6379/0", "fleet.db")  # doctest: +SKIP
    >>> rec.run()        # until rec.stop(), SIGTERM or SIGINT      # doctest: +SKIP

    Notes
    -----
    On :meth:`stop` the receiver keeps reading until one read hears nothing (at most
    ``STOP_GRACE_S`` seconds), and the listening period ends when that read began, so an
    event already on its way when the recorder was asked to stop is still written.
    """

    #: Seconds a stopping receiver may keep reading events already on their way.
    STOP_GRACE_S = 2.0

    def __init__(
        self,
        broker: str | None = None,
        db: str | os.PathLike[str] | Store = "celery.db",
        *,
        app: Any = None,
        flush_interval: float = 0.5,
        max_batch: int = 20_000,
        enable_events: bool = True,
        enable_events_every: float = 30.0,
        clock: Callable[[], float] | None = None,
        summarize_every: float | None = 600.0,
        summarize_lag: float = 3600.0,
    ) -> None:
        if broker is None and app is None:
            raise ValueError("give a broker URL or a Celery app")
        if broker is not None and (not isinstance(broker, str) or not broker.strip()):
            raise ValueError(f"broker must be a URL such as 'redis://host:6379/0', got {broker!r}")
        if not isinstance(db, (str, os.PathLike, Store)):
            raise TypeError(f"db must be a path, a URL or a Store, not {type(db).__name__}")
        if isinstance(db, Store):
            db.require_writable("record Celery events")
        for name, value in (
            ("flush_interval", flush_interval),
            ("enable_events_every", enable_events_every),
        ):
            if _number(value) is None or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if summarize_every is not None and (
            _number(summarize_every) is None or summarize_every <= 0
        ):
            raise ValueError(
                f"summarize_every must be a positive number of seconds or None,"
                f" got {summarize_every!r}"
            )
        if _number(summarize_lag) is None or summarize_lag < 0:
            raise ValueError(f"summarize_lag must be seconds, not {summarize_lag!r}")
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
        self.broker = broker
        self.db = db
        self.app = app
        self.flush_interval = float(flush_interval)
        self.max_batch = max_batch
        self.enable_events = bool(enable_events)
        self.enable_events_every = float(enable_events_every)
        self.clock: Callable[[], float] = clock or time.time
        self.summarize_every = None if summarize_every is None else float(summarize_every)
        self.summarize_lag = float(summarize_lag)
        self._next_summary = 0.0  # time.monotonic() of the next summarize
        self._stop = threading.Event()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._receiver: Any = None
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._drained_at: float | None = None  # the receiver's last drain began (clock)
        self._heard_in_drain = 0  # events the receiver's current drain delivered
        self._stop_by = math.inf  # time.monotonic() by which the receiver stops draining
        self._ended_at = -math.inf  # when the receiver stopped listening last (clock)
        self.totals = ApplyResult()
        self.errors = 0

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask :meth:`run` to flush, close and return. Safe from signal handlers and threads."""
        if not self._stop.is_set():
            self._stop_by = time.monotonic() + self.STOP_GRACE_S
        self._stop.set()

    @property
    def listening(self) -> bool:
        """Whether the recorder is subscribed to the event stream right now."""
        return self._listening.is_set()

    def wait_listening(self, timeout: float) -> bool:
        """Block until the recorder listens (or `timeout` seconds pass).

        Parameters
        ----------
        timeout : float

        Returns
        -------
        bool
            Whether it is listening.
        """
        return self._listening.wait(timeout)

    @property
    def source(self) -> str:
        """What the recorder listens to, as written in ``recorder_coverage``."""
        url = self.broker
        if url is None:
            url = str(self.app.conf.broker_url or "")
        return "celery " + redact_url(url)

    # -- the loop -----------------------------------------------------------------------
    def run(self, *, handle_signals: bool | None = None) -> ApplyResult:
        """Record until :meth:`stop` (or SIGTERM / SIGINT), then flush and close.

        Parameters
        ----------
        handle_signals : bool, optional
            Install SIGTERM and SIGINT handlers that call :meth:`stop` (restored on
            return). Defaults to True when called from the main thread.

        Returns
        -------
        ApplyResult
            What was recorded, added up.

        Raises
        ------
        QAnalyticsError
            If celery is not installed.
        SchemaError, StoreError
            If the store cannot be opened for writing.
        """
        _celery()
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        own_store = not isinstance(self.db, Store)
        db = self.db if isinstance(self.db, Store) else connect(self.db)
        previous: dict[signal.Signals, Any] = {}
        try:
            if handle_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    previous[signum] = signal.signal(signum, lambda *_: self.stop())
            writer = EventWriter(db)
            app = self._make_app()
            self._thread = threading.Thread(
                target=self._receive_loop, args=(app,), name="qanalytics-celery-receiver",
                daemon=True,
            )
            self._thread.start()
            try:
                self._write_loop(writer, app)
            finally:
                self.stop()
                self._thread.join(timeout=10)
                self._drain(writer)
                writer.end_coverage(self.clock())
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            if own_store:
                db.close()
        return self.totals

    def _make_app(self) -> Any:
        if self.app is not None and self.broker is None:
            return self.app
        celery = _celery()
        app = celery.Celery("qanalytics-recorder", broker=self.broker, set_as_current=False)
        if self.app is not None:
            app.conf.update(
                {
                    key: self.app.conf[key]
                    for key in ("event_exchange", "event_serializer", "broker_transport_options")
                    if key in self.app.conf
                }
            )
        return app

    def _write_loop(self, writer: EventWriter, app: Any) -> None:
        pending: list[RecordedEvent] = []
        next_enable = 0.0
        while not self._stop.is_set():
            deadline = time.monotonic() + self.flush_interval
            while len(pending) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=min(left, 0.1))
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                if isinstance(item, _Marker):
                    pending = self._flush(writer, pending)
                    self._mark(writer, item)
                else:
                    pending.append(item)
            pending = self._flush(writer, pending)
            self._maybe_summarize(writer, time.monotonic())
            if self.enable_events and writer.listening and time.monotonic() >= next_enable:
                next_enable = time.monotonic() + self.enable_events_every
                self._broadcast_enable(app)

    def _drain(self, writer: EventWriter) -> None:
        pending: list[RecordedEvent] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Marker):
                pending = self._flush(writer, pending)
                self._mark(writer, item)
            else:
                pending.append(item)
        for _attempt in range(3):
            pending = self._flush(writer, pending)
            if not pending:
                return
            time.sleep(0.2)
        log.error("could not write the last %d events", len(pending))

    def _flush(self, writer: EventWriter, pending: list[RecordedEvent]) -> list[RecordedEvent]:
        if not pending and not writer.listening:
            return pending
        try:
            result = writer.apply(pending, seen_at=self.clock())
        except QAnalyticsError as exc:
            # Keep the batch and try again at the next flush (a long write lock, say).
            self.errors += 1
            log.warning("writing %d events failed, will retry: %s", len(pending), exc)
            return pending
        self.totals.add(result)
        return []

    def _maybe_summarize(self, writer: EventWriter, at: float) -> bool:
        """Run summarize when it is due (`at`: time.monotonic()); whether it ran."""
        db = writer.db
        if self.summarize_every is None or at < self._next_summary:
            return False
        self._next_summary = at + self.summarize_every
        if db.schema_version < TIERS_VERSION:
            return False
        try:
            summarize(db, lag=self.summarize_lag, now=self.clock())
        except QAnalyticsError as exc:
            # Events keep being written; the next run catches up.
            self.errors += 1
            log.warning("summarizing the store failed, will retry: %s", exc)
        return True

    def _mark(self, writer: EventWriter, marker: _Marker) -> None:
        if marker.listening:
            writer.start_coverage(self.source, marker.at)
            log.info("listening to %s", self.source)
        else:
            writer.end_coverage(marker.at)
            if marker.reason == "stopped":
                log.info("stopped listening to %s", self.source)
            else:
                log.warning("stopped listening to %s: %s", self.source, marker.reason)

    def _broadcast_enable(self, app: Any) -> None:
        try:
            app.control.enable_events()
        except Exception as exc:  # the broker may be away; the receiver reconnects
            log.warning("could not broadcast enable_events: %s", exc)

    # -- the receiver thread ------------------------------------------------------------
    def _receive_loop(self, app: Any) -> None:
        from celery.events.receiver import EventReceiver

        recorder = self
        put = self._queue.put

        class Receiver(EventReceiver):
            # Give connection errors back to this loop, which retries while watching
            # for stop(); kombu's default retries for ever inside consume().
            connect_max_retries = 1

            def event_from_message(self, body: Any, localize: bool = True, **kw: Any) -> Any:
                # Keep the sender's epoch timestamp: "localizing" shifts it by the time
                # zone difference between sender and receiver.
                return super().event_from_message(body, localize=False, **kw)

            def on_consume_ready(
                self, connection: Any, channel: Any, *args: Any, **kwargs: Any
            ) -> None:
                handle = getattr(channel, "_handle_message", None)
                if callable(handle) and hasattr(channel, "subclient"):
                    # Redis: the consumer is ready before the subscription exists (kombu
                    # sends PSUBSCRIBE at the first poll). Listening starts when Redis
                    # confirms it: every event published after that reaches us.
                    def confirming(client: Any, response: Any) -> Any:
                        kind = response[0] if response else b""
                        if isinstance(kind, bytes):
                            kind = kind.decode("ascii", "replace")
                        if kind in ("psubscribe", "subscribe"):
                            started_listening()
                        return handle(client, response)

                    channel._handle_message = confirming
                else:
                    # AMQP declares and binds its queue synchronously: ready is listening.
                    started_listening()
                super().on_consume_ready(connection, channel, *args, **kwargs)

            @property
            def should_stop(self) -> bool:
                # Asked to stop, keep draining until a drain hears nothing (or the grace
                # runs out): everything published before that drain began was read, so
                # its start is when listening ends. Stopping at once would drop the events
                # already on their way, inside the period the coverage table claims.
                if not recorder._stop.is_set():
                    return False
                quiet = recorder._drained_at is not None and recorder._heard_in_drain == 0
                return quiet or time.monotonic() >= recorder._stop_by

            @should_stop.setter
            def should_stop(self, value: bool) -> None:
                if value:
                    recorder.stop()

            def on_iteration(self) -> None:
                recorder._drained_at = recorder.clock()
                recorder._heard_in_drain = 0

        def started_listening() -> None:
            if not recorder._listening.is_set():
                put(_Marker(True, recorder.clock()))
                recorder._listening.set()

        def stopped_listening(reason: str, at: float | None = None) -> None:
            if recorder._listening.is_set():
                end = recorder.clock() if at is None else at
                recorder._ended_at = end
                recorder._listening.clear()
                put(_Marker(False, end, reason))

        def on_event(event: Mapping[str, Any]) -> None:
            recorder._heard_in_drain += 1
            started_listening()  # an event proves the subscription (a transport unlike both)
            mapped = from_celery(event)
            if mapped is not None:
                put(mapped)

        backoff = 0.5
        while not self._stop.is_set():
            try:
                with app.connection_for_read() as conn:
                    self._drained_at = None
                    receiver = Receiver(conn, handlers={"*": on_event}, app=app)
                    self._receiver = receiver
                    if self._stop.is_set():
                        break
                    for _ in receiver.consume(
                        limit=None, timeout=None, safety_interval=0.2, wakeup=True
                    ):
                        backoff = 0.5
                    stopped_listening("stopped", self._drained_at)
                    if self._stop.is_set():
                        break
            except Exception as exc:
                if self._stop.is_set():
                    stopped_listening("stopped")
                    break
                log.warning("event stream lost: %s; reconnecting", exc)
                stopped_listening(str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                self._receiver = None
        stopped_listening("stopped")


def record(
    broker: str | None = None,
    db: str | os.PathLike[str] | Store = "celery.db",
    **options: Any,
) -> ApplyResult:
    """Record a Celery fleet into `db` until SIGTERM / SIGINT (or ``stop()`` elsewhere).

    Parameters
    ----------
    broker : str, optional
        The broker URL.
    db : str, os.PathLike or Store
        The store.
    **options
        Passed to :class:`CeleryRecorder`.

    Returns
    -------
    ApplyResult
        What was recorded.
    """
    return CeleryRecorder(broker, db, **options).run()


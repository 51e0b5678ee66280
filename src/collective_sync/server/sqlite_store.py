"""The embedded durable store: SQLite (stdlib) in WAL mode, written by one thread.

Why a writer thread: a commit waits for the disk (fsync), milliseconds the event loop must not
spend blocked while it answers time exchanges and fans out updates. The loop only appends SQL to
a list; at the end of each loop turn `commit()` hands the list over, and the writer runs whatever
has piled up since its last commit as one transaction (group commit), then reports the highest
ticket it made durable back on the loop. sqlite3 releases the GIL while it waits for the disk.

One process per data directory: an exclusive `flock` on `<dir>/lock` (released by the kernel
even when the process is killed), so two servers never write the same sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec

from ..protocol.messages import ControlOut
from .store import (
    Ended,
    ParticipantRecord,
    Recovered,
    RecoveredSession,
    SessionRecord,
    new_epoch,
)

log = logging.getLogger("collective_sync.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS participants (
    session TEXT NOT NULL, id TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (session, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS controls (
    session TEXT NOT NULL, seq INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (session, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (session TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (session TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ended (id TEXT PRIMARY KEY, at REAL NOT NULL, reason TEXT NOT NULL);
"""

Sync = Literal["full", "normal"]
_Op = tuple[str, tuple[Any, ...]]
_STOP = None


class StoreLocked(RuntimeError):
    """Another server process holds this data directory."""


class SqliteStore:
    """`Store` on one SQLite file under `data_dir`. `sync="full"` fsyncs every commit (survives
    power loss); `"normal"` survives a process crash but not the machine's."""

    immediate = False

    def __init__(
        self,
        data_dir: Path,
        clock: Callable[[], float],
        sync: Sync = "full",
        ended_retention: float = 24 * 3600.0,
    ):
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # session data: owner only
        self.path = data_dir / "collective-sync.db"
        self.clock = clock
        self.ended_retention = ended_retention
        self.on_durable: Callable[[int], None] = lambda ticket: None
        self.commits = 0  # transactions written
        self.commit_seconds = 0.0  # time spent in them (for /metrics and the benchmark)
        self._lock_fd = os.open(data_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise StoreLocked(f"{data_dir} is in use by another collective-sync process") from None
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.executescript(SCHEMA)
        self.epoch = ""
        self.secret = b""  # read (or made) by recover
        self._ticket = 0
        self._ops: list[_Op] = []
        self._positions: dict[str, tuple[int, int]] = {}  # session -> (last seq, history kept)
        self._queue: queue.SimpleQueue[tuple[list[_Op], int] | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: threading.Thread | None = None
        self._stopped_at: float | None = None  # set by close: the stop time the last commit records

    # --- start: recovery -------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Read everything back; a run that did not end cleanly gets a new epoch. Then start the
        writer (the loop that calls this is the one `on_durable` is called on)."""
        db = self._db
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        first = "epoch" not in meta
        clean = first or meta.get("status") == "clean"
        self.epoch = meta["epoch"] if clean and not first else new_epoch()
        stopped = meta.get("stopped_at")
        now = self.clock()
        db.execute("BEGIN")
        db.execute("DELETE FROM ended WHERE at < ?", (now - self.ended_retention,))
        self.secret = bytes.fromhex(meta["secret"]) if "secret" in meta else secrets.token_bytes(32)
        for key, value in (("epoch", self.epoch), ("status", "running"), ("secret", self.secret.hex())):
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
        db.execute("COMMIT")
        sessions: list[RecoveredSession] = []
        for sid, rec in db.execute("SELECT id, record FROM sessions").fetchall():
            record = msgspec.json.decode(rec, type=SessionRecord)
            parts = [
                msgspec.json.decode(r, type=ParticipantRecord)
                for (r,) in db.execute("SELECT record FROM participants WHERE session = ?", (sid,))
            ]
            controls = [
                msgspec.json.decode(r, type=ControlOut)
                for (r,) in db.execute("SELECT record FROM controls WHERE session = ? ORDER BY seq", (sid,))
            ]
            pos = db.execute("SELECT seq FROM positions WHERE session = ?", (sid,)).fetchone()
            snap = db.execute("SELECT doc FROM snapshots WHERE session = ?", (sid,)).fetchone()
            sessions.append(
                RecoveredSession(
                    record, parts, controls, pos[0] if pos else 0, snap[0].encode() if snap else None
                )
            )
        ended = [Ended(*row) for row in db.execute("SELECT id, at, reason FROM ended")]
        self._loop = asyncio.get_running_loop()
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()
        return Recovered(self.epoch, clean, float(stopped) if stopped is not None else None, sessions, ended)

    # --- writes (event loop) ---------------------------------------------------------------

    def _op(self, sql: str, *params: Any) -> int:
        self._ops.append((sql, params))
        self._ticket += 1
        return self._ticket

    def put_session(self, record: SessionRecord) -> int:
        return self._op(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?)", record.id, msgspec.json.encode(record).decode()
        )

    def end_session(self, ended: Ended) -> int:
        sid = ended.id
        for table in ("sessions", "participants", "controls", "positions", "snapshots"):
            key = "id" if table == "sessions" else "session"
            self._op(f"DELETE FROM {table} WHERE {key} = ?", sid)  # fixed table names
        return self._op("INSERT OR REPLACE INTO ended VALUES (?, ?, ?)", sid, ended.at, ended.reason)

    def put_participant(self, session: str, record: ParticipantRecord) -> int:
        return self._op(
            "INSERT OR REPLACE INTO participants VALUES (?, ?, ?)",
            session,
            record.id,
            msgspec.json.encode(record).decode(),
        )

    def delete_participant(self, session: str, pid: str) -> int:
        return self._op("DELETE FROM participants WHERE session = ? AND id = ?", session, pid)

    def append_control(self, msg: ControlOut, keep: int) -> int:
        """One INSERT per control; the session's log position and the history trim are written
        once per batch (at `commit`), however many controls the batch holds."""
        self._positions[msg.session] = (msg.seq, keep)
        return self._op(
            "INSERT OR REPLACE INTO controls VALUES (?, ?, ?)",
            msg.session,
            msg.seq,
            msgspec.json.encode(msg).decode(),
        )

    def put_state(self, session: str, version: int, doc: bytes) -> int:
        return self._op("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", session, version, doc.decode())

    def commit(self) -> None:
        """End of a loop turn: what was written goes to the writer as one batch."""
        if self._positions:
            for sid, (seq, keep) in self._positions.items():
                self._ops.append(("INSERT OR REPLACE INTO positions VALUES (?, ?)", (sid, seq)))
                if seq > keep:
                    self._ops.append(
                        ("DELETE FROM controls WHERE session = ? AND seq <= ?", (sid, seq - keep))
                    )
            self._positions.clear()
        if self._ops:
            ops, self._ops = self._ops, []
            self._queue.put((ops, self._ticket))

    async def close(self, stopped_at: float) -> None:
        """Write everything still pending, mark the run as ended cleanly, release the directory."""
        self._op("INSERT OR REPLACE INTO meta VALUES ('status', 'clean')")
        self._stopped_at = stopped_at
        self.commit()
        self._queue.put(_STOP)
        if self._writer is not None:
            await asyncio.to_thread(self._writer.join)
        else:  # never started: write directly
            self._drain_inline()
        self._db.close()
        os.close(self._lock_fd)

    # --- the writer thread -----------------------------------------------------------------

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            batches = [item]
            with contextlib.suppress(queue.Empty):
                while len(batches) < 1024:  # group everything that piled up during the last commit
                    batches.append(self._queue.get_nowait())
            if _STOP in batches:
                stop = True
            work = [b for b in batches if b is not None]
            if not work:
                continue
            ticket = max(t for _, t in work)
            while not self._execute([op for ops, _ in work for op in ops]):
                time.sleep(0.5)  # disk full, I/O error: keep the batch and retry (logged)
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop may close during shutdown
                    self._loop.call_soon_threadsafe(self.on_durable, ticket)

    def _execute(self, ops: list[_Op]) -> bool:
        t0 = time.perf_counter()
        db = self._db
        try:
            db.execute("BEGIN")
            for sql, params in ops:
                db.execute(sql, params)
            stopped = self._stopped_at if self._stopped_at is not None else self.clock()
            db.execute("INSERT OR REPLACE INTO meta VALUES ('stopped_at', ?)", (repr(stopped),))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store commit failed (%d writes, will retry): %s", len(ops), exc)
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            return False
        self.commits += 1
        self.commit_seconds += time.perf_counter() - t0
        return True

    def _drain_inline(self) -> None:
        ops: list[_Op] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if item is not None:
                    ops.extend(item[0])
        self._execute(ops)

"""The durable store (real SQLite files) and session restore rules, without a server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from collective_sync.engine.state import StateDoc
from collective_sync.protocol.messages import ControlOut, SessionSettings
from collective_sync.server.session import Session, SessionLimits
from collective_sync.server.sqlite_store import SqliteStore, StoreLocked
from collective_sync.server.store import Ended, Recovered

T0 = 1_800_000_000.0


class Durable:
    """Collects `on_durable` tickets and lets a test wait for one."""

    def __init__(self, store: SqliteStore):
        self.ticket = 0
        self.changed = asyncio.Event()
        store.on_durable = self.note

    def note(self, ticket: int) -> None:
        self.ticket = max(self.ticket, ticket)
        self.changed.set()

    async def reach(self, ticket: int) -> None:
        async with asyncio.timeout(10):
            while self.ticket < ticket:
                self.changed.clear()
                await self.changed.wait()


def _session(limits: SessionLimits | None = None) -> tuple[Session, str, str]:
    s = Session("cer-1", SessionSettings(session_id="cer-1", public=True), T0, limits or SessionLimits())
    lead, token, _ = s.add("Ana", "participant", {"c": 1}, "c1", T0)
    other, _, _ = s.add("Ben", "observer", {}, "c2", T0 + 1)
    s.set_state(lead.id, {"geometry.R": 2.5, f"participants.{lead.id}.hr": 61}, T0 + 2, T0 + 2)
    s.set_state(lead.id, {"geometry.R": None}, T0 + 3, T0 + 3)  # a tombstone must survive too
    return s, token, other.id


def _save(store: SqliteStore, s: Session) -> int:
    store.put_session(s.record())
    for p in s.participants.values():
        store.put_participant(s.id, p.record())
    return store.put_state(s.id, s.state.version, s.state.dump())


async def _open(path: Path) -> tuple[SqliteStore, Recovered]:
    store = SqliteStore(path, lambda: T0 + 10)
    return store, store.recover()


async def test_everything_comes_back_after_a_clean_close(tmp_path: Path) -> None:
    store, first = await _open(tmp_path)
    assert (first.sessions, first.clean) == ([], True)
    durable = Durable(store)
    s, token, observer = _session()
    s.host, s.host_user, s.locked, s.barred = s.leader, "user-ana", True, {"user-zed"}  # moderation
    _save(store, s)
    for i in range(5):
        out, _ = s.control(s.leader or "", "step", {"i": i}, None, T0 + 4)
        ticket = store.append_control(out, keep=3)
    store.commit()
    await durable.reach(ticket)
    await store.close(T0 + 5)

    store, rec = await _open(tmp_path)
    try:
        assert (rec.clean, rec.epoch, rec.stopped_at) == (True, first.epoch, T0 + 5)
        (saved,) = rec.sessions
        assert saved.record == s.record()
        assert [c.seq for c in saved.controls] == [3, 4, 5] and saved.seq == 5  # history trimmed
        assert saved.controls[-1] == ControlOut("cer-1", 5, T0 + 4, "step", s.leader or "", {"i": 4})
        assert {p.id: p for p in saved.participants} == {p.id: p.record() for p in s.participants.values()}
        back = Session.restore(saved, SessionLimits(), now=T0 + 100, stopped_at=rec.stopped_at)
        assert back.state.values == s.state.values and back.state.version == s.state.version
        # The tombstone came back: an older write to the deleted path still loses.
        assert back.state.apply({"geometry.R": 9}, T0 + 2.5, "zz") == {}
        assert back.seq == back.released_seq == 5
        assert (back.host, back.host_user, back.locked, back.barred) == (
            s.leader,
            "user-ana",
            True,
            {"user-zed"},
        )
        p, _ = back.resume(token, "c9")  # the token works; only its hash was stored
        assert (p.id, p.role) == (s.leader, "leader")
        assert back.participants[observer].role == "observer"
    finally:
        await store.close(T0 + 6)
    assert token.encode() not in (tmp_path / "collective-sync.db").read_bytes()


async def test_a_crash_changes_the_epoch_and_keeps_what_was_committed(tmp_path: Path) -> None:
    store, first = await _open(tmp_path)
    durable = Durable(store)
    s, _, _ = _session()
    ticket = _save(store, s)
    store.commit()
    await durable.reach(ticket)
    store.put_state(s.id, 99, b"[99,{},{},{},{}]")  # written but never committed: lost
    # A crash: no close(). The lock goes with the process; here, with its file descriptor.
    import os

    os.close(store._lock_fd)
    store, rec = await _open(tmp_path)
    try:
        assert rec.clean is False and rec.epoch != first.epoch
        (saved,) = rec.sessions
        assert saved.state is not None
        assert StateDoc.load(saved.state).version == s.state.version  # the last committed snapshot
    finally:
        await store.close(T0)


async def test_one_process_per_data_directory(tmp_path: Path) -> None:
    store, _ = await _open(tmp_path)
    try:
        with pytest.raises(StoreLocked):
            SqliteStore(tmp_path, lambda: T0)
    finally:
        await store.close(T0)
    again, _ = await _open(tmp_path)  # released on close
    await again.close(T0)


async def test_an_ended_session_is_remembered_then_forgotten(tmp_path: Path) -> None:
    store, _ = await _open(tmp_path)
    s, _, _ = _session()
    _save(store, s)
    store.end_session(Ended(s.id, T0 + 9, "empty"))
    await store.close(T0 + 9)
    store, rec = await _open(tmp_path)
    assert rec.sessions == [] and rec.ended == [Ended(s.id, T0 + 9, "empty")]
    await store.close(T0 + 9)
    late = SqliteStore(tmp_path, lambda: T0 + 9 + 2 * 86400)  # past the retention (a day)
    assert late.recover().ended == []
    await late.close(T0)


def test_restore_gives_grace_to_everyone_who_was_there() -> None:
    limits = SessionLimits(grace_period=5.0, restart_grace=30.0)
    s, _, observer = _session(limits)
    lead = s.leader or ""
    s.drop(observer, T0 + 10)  # already in its grace period: 5 s, until T0 + 15
    s.all_dropped(T0 + 12)  # the server stops at T0 + 12 with the leader connected
    rec = _recovered(s)
    back = Session.restore(rec, limits, now=T0 + 100, stopped_at=T0 + 12)
    assert back.participants[lead].grace_until == T0 + 130  # restart grace from the restart
    assert back.participants[observer].grace_until == T0 + 103  # the 3 s it had left
    assert all(p.conn is None for p in back.participants.values())
    assert [o.msg.leaves for o in back.expire(T0 + 103) if hasattr(o.msg, "leaves")] == [[observer]]
    assert back.leader == lead  # nobody else to fail over to; the leader keeps its seat meanwhile
    assert back.expire(T0 + 129) == []


def _recovered(s: Session):  # type: ignore[no-untyped-def]
    from collective_sync.server.store import RecoveredSession

    return RecoveredSession(
        s.record(), [p.record() for p in s.participants.values()], list(s.history), s.seq, s.state.dump()
    )

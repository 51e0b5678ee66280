"""The node driven directly: fake sinks, fake clock, explicit flushes and ticks."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from collective_sync.protocol.codec import decode_server
from collective_sync.protocol.messages import Joined, Leader, Presence, StateOut
from collective_sync.server.config import ServerConfig
from collective_sync.server.node import Connection, Node


@dataclass
class Sink:
    frames: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def send_frame(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def messages(self) -> list:
        return [m for f in self.frames for m in decode_server(f)]


class World:
    def __init__(self, **config: object) -> None:
        self.now = 1000.0
        cfg = ServerConfig(**config)  # type: ignore[arg-type]
        cfg.session.grace_period = 5.0
        self.node = Node(cfg, lambda: self.now)

    def conn(self) -> tuple[Connection, Sink]:
        sink = Sink()
        return self.node.connect(sink), sink

    def send(self, conn: Connection, **msg: object) -> None:
        self.node.receive(conn, msgspec.json.encode(msg))


def setup(w: World, receivers: int) -> tuple[Connection, str, list[tuple[Connection, Sink]]]:
    leader, lsink = w.conn()
    w.send(leader, type="create", name="L", rid=1)
    w.node.flush()
    sid = next(m for m in lsink.messages() if isinstance(m, Joined)).session
    rs = [w.conn() for _ in range(receivers)]
    for c, _ in rs:
        w.send(c, type="join", session=sid, name="r", role="observer")
    w.node.flush()
    for _, s in rs:
        s.frames.clear()
    return leader, sid, rs


def test_one_frame_per_receiver_per_turn_shared_between_receivers() -> None:
    w = World()
    leader, sid, rs = setup(w, 3)
    for i in range(4):
        w.send(leader, type="state_set", session=sid, at=w.now, set={"geometry.R": i})
    w.node.flush()
    frames = [s.frames for _, s in rs]
    assert all(len(f) == 1 for f in frames)  # four updates, one frame each
    assert frames[0][0] is frames[1][0] is frames[2][0]  # joined once, shared
    assert [m.set["geometry.R"] for m in rs[0][1].messages()] == [0, 1, 2, 3]


def test_paused_receiver_converges_after_resume() -> None:
    w = World()
    leader, sid, rs = setup(w, 2)
    slow, ssink = rs[0]
    w.node.pause(slow)
    for i in range(50):
        w.send(leader, type="state_set", session=sid, at=w.now + i * 1e-3, set={"geometry.R": i})
    w.node.flush()
    assert ssink.frames == []
    w.node.resume(slow)
    w.node.flush()
    (msg,) = ssink.messages()
    assert isinstance(msg, StateOut)
    assert msg.coalesced
    assert (msg.set, msg.v) == ({"geometry.R": 49}, 50)
    assert w.node.coalesced_drops() == 49


def test_slow_consumer_over_backlog_is_closed_with_4002() -> None:
    w = World(max_backlog_bytes=2000)
    leader, sid, rs = setup(w, 1)
    slow, ssink = rs[0]
    w.node.pause(slow)
    for i in range(40):
        w.send(leader, type="control", session=sid, event="e", payload={"i": i}, rid=i)
    assert slow.closing  # decided at once: nothing more is queued for it ...
    assert not slow.outbox
    w.node.flush()  # ... and carried out at the end of the turn
    assert ssink.closed is not None
    assert ssink.closed[0] == 4002
    assert slow.id not in w.node.conns  # no longer counted by /healthz
    for i in range(40, 400):  # the peer still does not read: no growth, no second count
        w.send(leader, type="control", session=sid, event="e", payload={"i": i}, rid=i)
        w.node.flush()
    assert not slow.outbox
    assert w.node.stats.slow_closes == 1
    assert ssink.frames == []


def test_grace_expiry_fails_over_and_empty_session_ends() -> None:
    w = World(session_ttl=30.0)
    leader, sid, _ = setup(w, 0)
    p, psink = w.conn()
    w.send(p, type="join", session=sid, name="P")
    w.node.flush()
    psink.frames.clear()
    w.node.disconnect(leader)
    w.now += 4.9
    w.node.tick()
    w.node.flush()
    assert not any(isinstance(m, Leader) for m in psink.messages())
    w.now += 0.2
    w.node.tick()
    w.node.flush()
    (lead,) = [m for m in psink.messages() if isinstance(m, Leader)]
    assert lead.reason == "failover"
    w.node.disconnect(p)
    w.now += 5.1
    w.node.tick()
    assert sid in w.node.sessions  # empty now, but lives for its ttl
    w.now += 30.0
    w.node.tick()
    assert sid not in w.node.sessions


def test_time_reply_bypasses_the_batch() -> None:
    w = World()
    c, sink = w.conn()
    w.node.flush()
    sink.frames.clear()
    w.send(c, type="time", t0=1.5)
    assert len(sink.frames) == 1  # written before any flush
    (reply,) = sink.messages()
    assert (reply.t0, reply.t1, reply.t2) == (1.5, w.now, w.now)


def test_a_large_sessions_state_of_one_turn_goes_out_once_merged() -> None:
    """Past the roster limit, while the server is behind, what one writer set within a turn is
    one merged update; otherwise (and in a small session, above) every update goes out."""
    w = World()
    w.node.config.session.roster_limit = 2
    leader, sid, rs = setup(w, 3)
    w.node.flush_took = 1.0  # the server is behind
    for i in range(4):
        w.send(
            leader,
            type="state_set",
            session=sid,
            at=w.now + i * 1e-3,
            set={"geometry.R": i, f"geometry.x{i}": i},
        )
    w.node.flush()
    got = [m for m in rs[2][1].messages() if isinstance(m, StateOut)]
    assert len(got) == 1
    assert got[0].coalesced
    assert got[0].set == {
        "geometry.R": 3,
        "geometry.x0": 0,
        "geometry.x1": 1,
        "geometry.x2": 2,
        "geometry.x3": 3,
    }
    assert got[0].at == w.now + 3e-3
    # A control in between keeps its place: the state before it goes first.
    rs[2][1].frames.clear()
    w.send(leader, type="state_set", session=sid, at=w.now + 1, set={"geometry.R": 7})
    w.send(leader, type="control", session=sid, event="cue")
    w.send(leader, type="state_set", session=sid, at=w.now + 2, set={"geometry.R": 8})
    w.node.flush()
    kinds = [(type(m).__name__, getattr(m, "set", None)) for m in rs[2][1].messages()]
    assert kinds == [("StateOut", {"geometry.R": 7}), ("ControlOut", None), ("StateOut", {"geometry.R": 8})]


def test_a_large_session_not_behind_gets_every_update() -> None:
    w = World()
    w.node.config.session.roster_limit = 2
    leader, sid, rs = setup(w, 3)
    w.node.flush_took = 0.0
    for i in range(4):
        w.send(leader, type="state_set", session=sid, at=w.now + i * 1e-3, set={"geometry.R": i})
    w.node.flush()
    got = [m.set["geometry.R"] for m in rs[2][1].messages() if isinstance(m, StateOut)]
    assert got == [0, 1, 2, 3]


def test_a_crowds_head_count_rides_in_the_frame_of_the_state_it_waited_for() -> None:
    """In a crowded session that streams state, the count costs no write of its own: it goes
    out with a state update, one frame per receiver, and the tick does not send it alone."""
    w = World()
    w.node.config.session.roster_limit = 2
    w.node.config.session.presence_interval = 0.5
    leader, sid, rs = setup(w, 3)
    w.send(leader, type="state_set", session=sid, at=w.now, set={"geometry.R": 1})
    w.node.flush()
    sink = rs[2][1]
    assert len(sink.frames) == 1
    kinds = [type(m) for m in sink.messages()]
    assert kinds == [Presence, StateOut]
    counted = next(m for m in sink.messages() if isinstance(m, Presence)).count
    assert counted is not None and counted.total == 4
    # Someone joins: the count is owed. While state keeps coming, the tick leaves it to the
    # stream (up to a second interval), and the next state carries it.
    late, _ = w.conn()
    w.send(late, type="join", session=sid, name="late", role="observer")
    w.node.flush()
    t0 = w.now
    w.now = t0 + 0.3
    w.send(leader, type="state_set", session=sid, at=w.now, set={"geometry.R": 2})
    w.node.flush()  # too soon for a count: the state goes alone
    sink.frames.clear()
    w.now = t0 + 0.6
    w.node.tick()
    w.node.flush()
    assert sink.frames == []
    w.now = t0 + 0.7
    w.send(leader, type="state_set", session=sid, at=w.now, set={"geometry.R": 3})
    w.node.flush()
    assert len(sink.frames) == 1
    assert [type(m) for m in sink.messages()] == [Presence, StateOut]
    # The stream stops and someone else joins: the count goes alone, after one interval.
    other, _ = w.conn()
    w.send(other, type="join", session=sid, name="other", role="observer")
    w.node.flush()
    sink.frames.clear()
    w.now = t0 + 1.3
    w.node.tick()
    w.node.flush()
    alone = sink.messages()
    assert [type(m) for m in alone] == [Presence]
    assert alone[0].count is not None and alone[0].count.total == 6

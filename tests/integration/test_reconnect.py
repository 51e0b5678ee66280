"""The Python SDK's recovery against the real server: reconnect with backoff, one socket at a
time, resume as the same participant, rejoin afresh when the grace period is over, stop when the
session is gone, and close codes that must not be retried."""

from __future__ import annotations

import pytest
from support import make_config

from collective_sync.client import Client, Session
from collective_sync.client.backoff import CAP, backoff_delay
from collective_sync.protocol.errors import CloseCode
from collective_sync.protocol.messages import ControlOut
from collective_sync.server.config import ServerConfig


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config(session_ttl=0.3)
    config.session.grace_period = 5.0
    return config


def kinds(client: Client) -> list[str]:
    return [e.kind for e in client.connection_events]


def close_all(server, code: CloseCode = CloseCode.GOING_AWAY) -> None:  # type: ignore[no-untyped-def]
    server.server.node.close_all(code, "server restarting; reconnect and resume")


async def leader_and_follower(connect) -> tuple[Client, Client, Session, Session]:  # type: ignore[no-untyped-def]
    lead, follower = await connect(), await connect()
    s = await lead.create("Lea")
    return lead, follower, s, await follower.join(s.id, "Fin")


def drop(server, client: Client) -> None:  # type: ignore[no-untyped-def]
    """The server closes this one client's connection (1001), as a restart would."""
    node = server.server.node
    node._close(node.conns[client.welcome.conn], CloseCode.GOING_AWAY, "restarting")


def test_backoff_is_bounded_and_jittered() -> None:
    assert [backoff_delay(n, 0.0) for n in range(3)] == [0.125, 0.25, 0.5]
    assert [backoff_delay(n, 1.0) for n in range(3)] == [0.25, 0.5, 1.0]
    assert backoff_delay(1000, 0.999) <= CAP and backoff_delay(1000, 0.0) == CAP / 2


async def test_resumes_as_the_same_participant_with_one_socket(server, connect) -> None:
    lead, follower, s, f = await leader_and_follower(connect)
    me, token = f.me, f.token
    node = server.server.node
    for round_ in range(3):
        close_all(server)
        await follower.wait_for(lambda c, n=round_: kinds(c).count("resumed") == n + 1, 10)
        await lead.wait_for(lambda c: c.ready, 10)
        assert (f.me, f.token, f.role) == (me, token, "participant")
        assert len(node.conns) == 2  # one socket each, never a leak
    assert kinds(follower)[:1] == ["open"]
    assert kinds(follower)[1:5] == ["lost", "connecting", "open", "resumed"]
    resumed = [e.detail for e in follower.connection_events if e.kind == "resumed"]
    assert resumed[0] == {"session": s.id, "same": True, "epoch_changed": False, "you": me}
    # Requests work again, on the same Session object the application holds.
    seq = await s.control("step", {"i": 1})
    await f.wait_for(lambda ses: ses.seq == seq)


async def test_while_away_requests_fail_fast_and_waiters_keep_waiting(server, connect) -> None:
    lead = await connect()
    s = await lead.create("Lea")
    close_all(server)
    await lead.wait_for(lambda c: c.state != "open", 5)
    with pytest.raises(ConnectionError):
        await s.control("step", {})
    await lead.wait_for(lambda c: c.ready, 10)
    assert await s.control("step", {}) == 1


async def test_after_the_grace_period_it_rejoins_afresh_and_misses_no_control(server, connect) -> None:
    server.config.session.grace_period = 0.0  # gone at the next tick: before any reconnect
    lead = await connect()
    watcher = await connect()
    s = await lead.create("Lea")
    w = await watcher.join(s.id, "Obs", role="observer")
    old = w.me
    node = server.server.node
    drop(server, watcher)
    await lead.wait_for(lambda c: old not in s.participants, 10)  # its grace period is over
    seqs = [await s.control("step", {"i": i}) for i in range(3)]  # sent while it is away
    await watcher.wait_for(lambda c: "resumed" in kinds(c), 15)
    (ev,) = [e.detail for e in watcher.connection_events if e.kind == "resumed"]
    assert ev["same"] is False and ev["you"] == w.me != old
    assert w.role == "observer" and w.participants[w.me].name == "Obs"
    await w.wait_for(lambda ses: ses.seq == seqs[-1])
    got = [e.seq for e in w._events if isinstance(e, ControlOut)]
    assert got == seqs  # every control sent while it was away, once
    assert len(node.conns) == 2


async def test_a_session_gone_while_away_ends_and_is_not_retried(server, connect) -> None:
    lead, follower, s, f = await leader_and_follower(connect)
    node = server.server.node
    await lead.close()
    drop(server, follower)
    node._end(node.sessions[s.id], node.clock(), "ended by its host")  # while the follower is away
    await follower.wait_for(lambda c: "ended" in kinds(c), 10)
    (ev,) = [e.detail for e in follower.connection_events if e.kind == "ended"]
    assert (ev["session"], ev["code"]) == (s.id, "session_ended")
    assert "ended by its host" in ev["reason"]
    assert f.ended is not None and s.id not in follower.sessions
    assert follower.ready  # the connection itself is fine, and stays one socket
    assert kinds(follower).count("connecting") == 1  # and the session is not retried
    assert len(node.conns) == 1


async def test_a_second_connection_resuming_replaces_the_first(server, connect) -> None:
    lead = await connect()
    first = await connect()
    second = await connect()
    s = await lead.create("Lea")
    f = await first.join(s.id, "Fin")
    moved = await second.join(s.id, "Fin", resume=f.token)
    assert moved.me == f.me
    await first.wait_for(lambda c: "ended" in kinds(c), 5)
    (ev,) = [e.detail for e in first.connection_events if e.kind == "ended"]
    assert (ev["session"], ev["code"]) == (s.id, "replaced")
    assert s.id not in first.sessions and first.ready


@pytest.mark.parametrize("code", [CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG])
async def test_a_close_a_retry_cannot_fix_is_final(server, connect, code: CloseCode) -> None:
    client = await connect()
    await client.create("Lea")
    close_all(server, code)
    closed = await client.wait_closed(5)
    assert closed.code == code and client.state == "closed"
    assert "connecting" not in kinds(client)


async def test_leaving_while_disconnected_is_not_undone_by_the_reconnect(server, connect) -> None:
    lead, follower, s, f = await leader_and_follower(connect)
    server.config.session.grace_period = 0.5
    drop(server, follower)
    await follower.wait_for(lambda c: c.state != "open", 5)
    await f.leave()  # offline: only forgotten here
    assert f.left and s.id not in follower.sessions
    await follower.wait_for(lambda c: c.ready, 10)
    assert "resumed" not in kinds(follower)  # not rejoined
    await lead.wait_for(lambda c: f.me not in s.participants, 10)  # gone after its grace period

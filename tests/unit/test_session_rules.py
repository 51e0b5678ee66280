"""Session rules in fake time: leadership, grace periods, failover, resume, control log."""

from __future__ import annotations

import pytest

from collective_sync.protocol.errors import ProtocolError
from collective_sync.protocol.messages import ControlOut, Leader, Presence, SessionSettings, StateOut
from collective_sync.server.session import Session, SessionLimits


def make(grace: float = 5.0, history: int = 1024) -> Session:
    return Session(
        "s1", SessionSettings(session_id="s1"), 0.0, SessionLimits(grace_period=grace, history=history)
    )


def test_first_non_observer_claims_leadership() -> None:
    s = make()
    obs, _, _ = s.add("O", "observer", {}, "c0", 0.0)
    assert s.leader is None
    assert obs.role == "observer"
    p, _, outs = s.add("P", "participant", {}, "c1", 1.0)
    assert (s.leader, p.role) == (p.id, "leader")
    assert any(isinstance(o.msg, Leader) and o.msg.reason == "claimed" for o in outs)
    joins = [o for o in outs if isinstance(o.msg, Presence)]
    assert joins[0].exclude == p.id  # the joiner learns the list from `joined`, not the diff


def test_drop_then_expire_fails_over_to_longest_present_connected() -> None:
    s = make(grace=5.0)
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    s.add("Obs", "observer", {}, "c1", 1.0)
    gone, _, _ = s.add("Gone", "participant", {}, "c2", 2.0)
    heir, _, _ = s.add("Heir", "participant", {}, "c3", 3.0)
    s.add("Young", "participant", {}, "c4", 4.0)
    s.drop(gone.id, 10.0)  # older than the heir, but disconnected
    outs = s.drop(lead.id, 10.0)
    assert outs[0].msg.updates[0].connected is False
    assert s.expire(14.9) == []
    assert s.leader == lead.id
    outs = s.expire(15.0)
    leaders = [o.msg for o in outs if isinstance(o.msg, Leader)]
    assert [(m.leader, m.reason, m.previous) for m in leaders] == [(heir.id, "failover", lead.id)]
    assert lead.id not in s.participants
    assert gone.id not in s.participants
    assert s.participants[heir.id].role == "leader"


def test_vacant_when_nobody_can_lead_then_next_joiner_claims() -> None:
    s = make()
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    s.add("Obs", "observer", {}, "c1", 1.0)
    outs = s.remove(lead.id, 2.0)
    assert [o.msg.reason for o in outs if isinstance(o.msg, Leader)] == ["vacant"]
    p, _, outs = s.add("New", "participant", {}, "c2", 3.0)
    assert s.leader == p.id


def test_resume_keeps_identity_and_role() -> None:
    s = make()
    lead, token, _ = s.add("L", "participant", {}, "c0", 0.0)
    assert token not in repr(s.participants) and lead.token_hash != token  # kept only hashed
    s.drop(lead.id, 1.0)
    p, outs = s.resume(token, "c9")
    assert (p.id, p.role, p.conn, p.dropped_at) == (lead.id, "leader", "c9", None)
    assert outs[0].msg.updates[0].connected is True
    assert s.expire(100.0) == []  # no pending grace any more
    with pytest.raises(ProtocolError) as err:
        s.resume("bogus", "c1")
    assert err.value.code == "resume_failed"


def test_control_is_leader_only_ordered_and_bounded() -> None:
    s = make(history=3)
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    other, _, _ = s.add("O", "participant", {}, "c1", 0.0)
    with pytest.raises(ProtocolError) as err:
        s.control(other.id, "x", None, None, 1.0)
    assert err.value.code == "not_leader"
    seqs = [s.control(lead.id, "x", {"i": i}, None, 1.0)[0].seq for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    s.released_seq = 4  # 5 is not durable yet: nobody may replay it
    assert [m.seq for m in s.replay_after(1)] == [3, 4]  # history keeps the last 3
    s.released_seq = 5
    assert [m.seq for m in s.replay_after(1)] == [3, 4, 5]
    assert [m.seq for m in s.replay_after(4)] == [5]
    msg, _ = s.control(lead.id, "x", None, None, 7.5)
    assert isinstance(msg, ControlOut)
    assert msg.at == 7.5  # stamped with server time when the sender gave none
    with pytest.raises(ProtocolError) as err:
        s.control(lead.id, "x", None, 100.0, 7.5)
    assert err.value.code == "bad_timestamp"


def test_handover_rules() -> None:
    s = make()
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    obs, _, _ = s.add("O", "observer", {}, "c1", 0.0)
    p, p_token, _ = s.add("P", "participant", {}, "c2", 0.0)
    with pytest.raises(ProtocolError):
        s.handover(lead.id, obs.id)
    with pytest.raises(ProtocolError):
        s.handover(p.id, lead.id)  # not the leader
    s.drop(p.id, 1.0)
    with pytest.raises(ProtocolError):
        s.handover(lead.id, p.id)  # disconnected
    s.resume(p_token, "c3")
    s.handover(lead.id, p.id)
    assert (s.leader, lead.role, p.role) == (p.id, "participant", "leader")


def test_state_permissions_and_area_cleanup() -> None:
    s = make()
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    p, _, _ = s.add("P", "participant", {}, "c1", 0.0)
    obs, _, _ = s.add("O", "observer", {}, "c2", 0.0)
    assert s.set_state(lead.id, {"geometry.R": 1.0}, 1.0, 1.0)[0].msg.v == 1
    with pytest.raises(ProtocolError) as err:
        s.set_state(p.id, {"geometry.R": 2.0}, 1.0, 1.0)
    assert err.value.code == "not_leader"
    with pytest.raises(ProtocolError) as err:
        s.set_state(obs.id, {f"participants.{obs.id}.x": 1}, 1.0, 1.0)
    assert err.value.code == "forbidden"
    s.set_state(p.id, {f"participants.{p.id}.hr": 60}, 1.0, 1.0)
    outs = s.remove(p.id, 2.0)
    cleared = [o.msg for o in outs if isinstance(o.msg, StateOut)]
    assert cleared[0].set == {f"participants.{p.id}.hr": None}
    assert s.state.values == {"geometry.R": 1.0}


def test_empty_since_tracks_last_departure() -> None:
    s = make()
    p, _, _ = s.add("L", "participant", {}, "c0", 1.0)
    assert s.empty_since is None
    s.remove(p.id, 4.0)
    assert s.empty_since == 4.0


def test_the_host_and_facilitators_lead_first() -> None:
    s = make()
    host, _, _ = s.add("Host", "participant", {}, "c0", 0.0)
    s.host = host.id
    early, _, _ = s.add("Early", "participant", {}, "c1", 1.0)  # present longest after the host
    fac, _, _ = s.add("Fac", "participant", {}, "c2", 2.0, facilitator=True)
    obs, _, _ = s.add("Obs", "observer", {}, "c3", 3.0)
    assert [o.msg.updates[0].facilitator for o in s.moderate(host.id, "facilitator", early.id, 4.0)[1:]] == [
        True
    ]
    s.moderate(host.id, "unfacilitator", early.id, 4.0)
    with pytest.raises(ProtocolError) as err:
        s.moderate(host.id, "facilitator", obs.id, 4.0)  # an observer never leads
    assert err.value.code == "invalid_target"
    with pytest.raises(ProtocolError):
        s.moderate(early.id, "facilitator", early.id, 4.0)  # only the host names them
    s.drop(host.id, 5.0)
    s.expire(100.0)  # the host leader is gone: the facilitator leads, not the longer-present Early
    assert s.leader == fac.id
    s.drop(fac.id, 101.0)
    s.expire(200.0)  # no host or facilitator left: the longest-present participant, as before
    assert s.leader == early.id


def test_a_participant_does_not_claim_while_a_facilitator_is_there() -> None:
    s = make()
    fac, _, _ = s.add("Fac", "observer", {}, "c0", 0.0)  # listening only: not a steward
    p, _, _ = s.add("P", "participant", {}, "c1", 1.0)
    assert s.leader == p.id  # nobody who leads first is connected: claims, as before
    s2 = make()
    lead, _, _ = s2.add("L", "participant", {}, "c0", 0.0, facilitator=True)
    s2.remove(lead.id, 1.0)  # vacant
    f2, _, _ = s2.add("F", "participant", {}, "c1", 2.0, facilitator=True)
    assert s2.leader == f2.id
    s2.handover(f2.id, s2.add("Q", "participant", {}, "c2", 3.0)[0].id)  # handover: to anyone
    assert s2.participants[s2.leader or ""].name == "Q"
    assert fac.role == "observer"


def test_a_dropped_participant_of_a_verified_user_can_be_reissued_a_token() -> None:
    s = make()
    web, old, _ = s.add("W", "participant", {"via": "realtime"}, "c1", 0.0, user="u1")
    app, _, _ = s.add("A", "participant", {}, "c2", 0.0, user="u1")  # the same user, another kind
    other, _, _ = s.add("O", "participant", {"via": "realtime"}, "c3", 0.0, user="u2")
    realtime = lambda p: p.meta.get("via") == "realtime"  # noqa: E731
    assert s.reissue("u1", realtime) is None  # connected: never taken this way
    for p in (web, app, other):
        s.drop(p.id, 1.0)
    fresh = s.reissue("u1", realtime)
    assert fresh is not None and s.holder(fresh) is web  # its own kind, its own user only
    assert s.holder(old) is None  # the old token stops working
    with pytest.raises(ProtocolError):
        s.resume(fresh, "c9", user="u2")  # still only for its user
    p, _ = s.resume(fresh, "c9", user="u1")
    assert (p.id, p.role) == (web.id, "leader")
    assert s.reissue("u1", realtime) is None  # back: nothing dropped of that kind
    assert s.reissue("u3", lambda p: True) is None

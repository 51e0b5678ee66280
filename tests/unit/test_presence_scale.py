"""Presence in a large session, in fake time: a roster announced one by one, a counted crowd.

What a join costs the others must not grow with the session: beyond the roster limit a joiner
is announced to nobody, and the head count goes out at most every `presence_interval`."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from collective_sync.protocol.messages import Count, Leader, Presence, SessionSettings
from collective_sync.server.session import Out, Participant, Session, SessionLimits
from collective_sync.server.store import RecoveredSession

LIMIT = 3


def make(limit: int = LIMIT, interval: float = 0.5) -> Session:
    limits = SessionLimits(roster_limit=limit, presence_interval=interval)
    return Session("s1", SessionSettings(session_id="s1"), 0.0, limits)


def fill(s: Session, n: int, role: str = "observer") -> list[Participant]:
    return [s.add(f"P{i}", role, {}, f"c{i}", float(i))[0] for i in range(n)]  # type: ignore[arg-type]


def broadcasts(outs: list[Out]) -> list[Presence]:
    return [o.msg for o in outs if isinstance(o.msg, Presence) and o.to is None]


def test_small_sessions_announce_every_join_and_send_no_count() -> None:
    s = make(limit=100)
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    for i in range(5):
        _, _, outs = s.add(f"P{i}", "observer", {}, f"c{i + 1}", 1.0)
        assert [len(m.joins) for m in broadcasts(outs)] == [1]
    assert not s.crowded
    assert len(s.roster_for(lead)) == 6
    assert s.count_out(10.0) is None  # nobody is only counted: nothing new on the wire


def test_beyond_the_limit_a_join_is_announced_to_nobody() -> None:
    s = make()
    first = fill(s, LIMIT)
    late, _, outs = s.add("Late", "observer", {}, "cx", 5.0)
    assert outs == []
    assert s.crowded
    assert [q.id for q in s.roster_for(late)] == [*(p.id for p in first), late.id]  # and itself
    assert [q.id for q in s.roster_for(first[0])] == [p.id for p in first]


def test_the_head_count_goes_out_at_most_every_interval() -> None:
    s = make(interval=0.5)
    fill(s, LIMIT + 10)
    out = s.count_out(1.0)
    assert out is not None and out.to is None
    assert out.msg.count is not None
    assert (out.msg.count.total, out.msg.count.connected, out.msg.count.observers) == (13, 13, 13)
    s.add("More", "participant", {}, "cy", 1.1)
    assert s.count_out(1.2) is None  # too soon: still owed
    out = s.count_out(1.5)
    assert out is not None and out.msg.count is not None and out.msg.count.total == 14
    assert s.count_out(5.0) is None  # nothing changed since


def test_while_state_streams_a_due_count_waits_one_more_interval_for_a_ride() -> None:
    s = make(interval=0.5)
    fill(s, LIMIT + 10)
    assert s.count_out(1.0) is not None  # the first count
    s.add("A", "participant", {}, "ca", 1.1)
    s.streamed_at = 1.4  # state went to everyone just now
    assert s.count_out(1.6) is None  # due, but a state send is coming to carry it
    out = s.count_out(1.6, riding=True)
    assert out is not None and out.msg.count is not None and out.msg.count.total == 14
    s.add("B", "participant", {}, "cb", 1.7)
    s.streamed_at = 1.9
    assert s.count_out(2.0, riding=True) is None  # a ride, but never more often than the interval
    s.streamed_at = 1.9 - 1.0  # the stream stopped: nothing to ride on
    assert s.count_out(2.2) is not None  # alone, after one interval
    s.add("C", "participant", {}, "cc", 2.3)
    s.streamed_at = 3.1  # streaming, but no ride comes in time
    assert s.count_out(3.1) is None
    out = s.count_out(3.2)  # alone, after two intervals
    assert out is not None and out.msg.count is not None and out.msg.count.total == 16


def test_a_crowd_members_changes_reach_only_itself_and_the_count() -> None:
    s = make()
    fill(s, LIMIT)
    late, _, _ = s.add("Late", "observer", {}, "cx", 5.0)
    s.count_out(5.0)
    outs = s.update_meta(late.id, {"mood": "calm"})
    assert [o.to for o in outs] == [late.id]
    outs = s.drop(late.id, 6.0)
    assert broadcasts(outs) == []
    out = s.count_out(6.0)
    assert out is not None and out.msg.count is not None and out.msg.count.connected == LIMIT


def test_a_roster_member_leaving_makes_room_for_the_longest_present_of_the_crowd() -> None:
    s = make()
    first = fill(s, LIMIT)
    older, _, _ = s.add("Older", "observer", {}, "cx", 5.0)
    s.add("Younger", "observer", {}, "cy", 6.0)
    outs = s.remove(first[1].id, 7.0)
    msgs = broadcasts(outs)
    assert [m.leaves for m in msgs if m.leaves] == [[first[1].id]]
    assert [[p.id for p in m.joins] for m in msgs if m.joins] == [[older.id]]
    assert older.id in s.shown


def test_a_crowd_member_who_comes_to_lead_joins_the_roster_first() -> None:
    s = make()
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    fill(s, LIMIT - 1)
    heir, _, _ = s.add("Heir", "participant", {}, "cx", 5.0)
    assert heir.id not in s.shown
    outs = s.handover(lead.id, heir.id)
    kinds = [type(o.msg).__name__ for o in outs if o.to is None]
    assert kinds == ["Leader", "Presence"]
    shown = broadcasts(outs)[0]
    assert [p.id for p in shown.joins] == [heir.id]
    assert [p.id for p in shown.updates] == [lead.id]
    assert heir.id in s.shown


def test_failover_to_a_crowd_member_announces_it() -> None:
    s = make(limit=1)
    lead, _, _ = s.add("L", "participant", {}, "c0", 0.0)
    heir, _, _ = s.add("Heir", "participant", {}, "c1", 1.0)
    outs = s.remove(lead.id, 2.0)
    leader = [o.msg for o in outs if isinstance(o.msg, Leader)]
    assert [m.leader for m in leader] == [heir.id]
    assert heir.id in {p.id for m in broadcasts(outs) for p in m.joins}


def test_roster_pages_list_everyone_once_in_join_order() -> None:
    s = make()
    people = fill(s, 11)
    s.remove(people[4].id, 20.0)
    seen: list[str] = []
    after = None
    while True:
        page, after = s.roster_page(after, 3)
        seen.extend(p.id for p in page)
        if after is None:
            break
    assert seen == [p.id for p in people if p is not people[4]]


def test_after_a_restart_the_roster_is_the_same_people() -> None:
    s = make()
    people = fill(s, 6)
    saved = RecoveredSession(s.record(), [p.record() for p in reversed(people)], [], 0, None)
    back = Session.restore(saved, s.limits, 100.0, 99.0)
    assert back.shown == s.shown
    assert [p.id for p in back.participants.values()] == [p.id for p in people]


@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "obs", "drop", "resume", "remove", "stop"]), st.integers(0, 30))
    )
)
def test_the_head_count_always_equals_counting_everyone(ops: list[tuple[str, int]]) -> None:
    """The count is kept as things change (not recounted per join): it must never drift."""
    s = make()
    tokens: dict[str, str] = {}
    for k, (op, i) in enumerate(ops):
        ids = list(s.participants)
        target = ids[i % len(ids)] if ids else None
        if op in ("add", "obs"):
            p, token, _ = s.add("X", "participant" if op == "add" else "observer", {}, f"c{k}", float(k))
            tokens[p.id] = token
        elif op == "drop" and target:
            s.drop(target, float(k))
        elif op == "resume" and target:
            s.resume(tokens[target], f"c{k}")
        elif op == "remove" and target:
            s.remove(target, float(k))
        elif op == "stop":
            s.all_dropped(float(k))
        ps = s.participants.values()
        assert s.count() == Count(
            total=len(ps),
            connected=sum(p.conn is not None for p in ps),
            observers=sum(p.role == "observer" for p in ps),
            listed=len(s.shown),
        )

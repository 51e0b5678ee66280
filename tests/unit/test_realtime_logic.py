"""Pure parts of the Realtime gateway: the Phoenix frame codec and the presence view."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from collective_sync.realtime import phoenix
from collective_sync.realtime.presence import BOOKKEEPING, PresenceView, presence_of


def push(
    join_ref: str, ref: str, topic: str, event: str, payload: bytes, meta: bytes = b"", enc: int = 1
) -> bytes:
    """A binary user broadcast push as realtime-js' 2.0.0 serializer writes it."""
    fields = [join_ref.encode(), ref.encode(), topic.encode(), event.encode(), meta]
    return struct.pack("7B", 3, *(len(f) for f in fields), enc) + b"".join(fields) + payload


def test_decodes_both_serializers_and_the_binary_broadcast() -> None:
    v2 = phoenix.decode(b'["1","2","realtime:t","phx_join",{"config":{}}]', False, phoenix.VSN_2)
    assert (v2.join_ref, v2.ref, v2.topic, v2.event, v2.payload) == (
        "1",
        "2",
        "realtime:t",
        "phx_join",
        {"config": {}},
    )
    v1 = phoenix.decode(b'{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}', False, phoenix.VSN_1)
    assert (v1.join_ref, v1.ref, v1.topic, v1.event) == (None, "7", "phoenix", "heartbeat")
    b = phoenix.decode(
        push("1", "3", "realtime:t", "cue", b'{"n":1}', b'{"persist":true}'), True, phoenix.VSN_2
    )
    assert (b.join_ref, b.ref, b.topic, b.event) == ("1", "3", "realtime:t", "broadcast")
    assert b.payload == {"type": "broadcast", "event": "cue", "payload": {"n": 1}, "persist": True}


@pytest.mark.parametrize(
    ("data", "binary", "why"),
    [
        (b"not json", False, "not JSON"),
        (b'["1","2","t","e"]', False, "2.0.0 frame"),
        (b'[1,2,"t",5,{}]', False, "event must be a string"),
        (b'["1","2","' + b"t" * 300 + b'","e",{}]', False, "topic must be"),
        (b"[" * 40 + b"]" * 40, False, "nested"),
        (b'["1","2","t","e","\\ud800"]', False, "not JSON"),
        (bytes([4, 0, 0, 0, 0, 0, 1]), True, "kind 3"),
        (push("1", "2", "t", "e", b"{}")[:9], True, "shorter than its header"),
        (push("1", "2", "t", "e", b"\x00\x01", enc=0), True, "binary broadcast payloads"),
        (push("1", "2", "t", "e", b"{broken"), True, "not JSON"),
        (b"\x03", True, "kind 3"),
        (b'["1","2","t","e",{"a":"\xff"}]', False, "UTF-8"),
    ],
)
def test_refuses_what_is_not_a_phoenix_message(data: bytes, binary: bool, why: str) -> None:
    with pytest.raises(phoenix.FrameError, match=why):
        phoenix.decode(data, binary, phoenix.VSN_2)


def test_encodes_each_serializer_as_its_client_reads_it() -> None:
    msg = phoenix.Message("1", None, "realtime:t", "presence_diff", {"joins": {}, "leaves": {}})
    assert json.loads(phoenix.encode(msg, phoenix.VSN_2)) == [
        "1",
        None,
        "realtime:t",
        "presence_diff",
        msg.payload,
    ]
    assert json.loads(phoenix.encode(msg, phoenix.VSN_1)) == {
        "join_ref": "1",
        "ref": None,
        "topic": "realtime:t",
        "event": "presence_diff",
        "payload": msg.payload,
    }


def info(pid: str, role: str = "participant", **meta: Any) -> dict[str, Any]:
    return {"id": pid, "name": pid.upper(), "role": role, "joinedAt": 1.0, "meta": meta}


def no_users(pid: str) -> None:
    return None


def test_presence_shows_tracked_and_native_participants_with_the_apps_words() -> None:
    lead = info("p1", "leader")  # a native leader: present, known by its participant id
    sub = info("p2", **{BOOKKEEPING: {"tracked": False}})  # subscribed, never tracked: absent
    ben = info("p3", user_id="ub", display_name="Ben", **{BOOKKEEPING: {"tracked": True, "key": "k3"}})
    wit = info("p4", "observer", user_id="uw")
    gone = {**info("p5"), "connected": False}
    state = PresenceView().state([lead, sub, ben, wit, gone], no_users)
    assert set(state) == {"p1", "k3", "uw"}
    assert state["p1"]["metas"][0] | {"phx_ref": ""} == {
        "user_id": "p1",
        "display_name": "P1",
        "role": "facilitator",
        "participant_id": "p1",
        "phx_ref": "",
    }
    assert (
        state["k3"]["metas"][0]["display_name"] == "Ben" and state["k3"]["metas"][0]["role"] == "participant"
    )
    assert state["uw"]["metas"][0]["role"] == "witness"
    assert BOOKKEEPING not in state["k3"]["metas"][0]


def test_a_verified_user_wins_over_a_claimed_user_id() -> None:
    key, meta = presence_of(info("p1", user_id="someone-else"), "user-a") or ("", {})
    assert (key, meta["user_id"]) == ("user-a", "user-a")


def test_diffs_repeat_the_refs_and_metas_the_client_holds() -> None:
    view = PresenceView()
    first = view.state([info("p1", user_id="ua", hr=60)], no_users)
    ref1 = first["ua"]["metas"][0]["phx_ref"]
    assert view.diff([info("p1", user_id="ua", hr=60)], [], no_users) is None  # nothing shown changed
    changed = view.diff([info("p1", user_id="ua", hr=70)], [], no_users)
    assert changed is not None
    assert changed["leaves"]["ua"]["metas"][0] == {**first["ua"]["metas"][0]}  # the old meta, its ref
    ref2 = changed["joins"]["ua"]["metas"][0]["phx_ref"]
    assert ref2 != ref1 and changed["joins"]["ua"]["metas"][0]["hr"] == 70
    dropped = view.diff([{**info("p1", user_id="ua", hr=70), "connected": False}], [], no_users)
    assert dropped == {"joins": {}, "leaves": {"ua": {"metas": [changed["joins"]["ua"]["metas"][0]]}}}
    assert view.diff([], ["p1"], no_users) is None  # already gone for this client
    assert len(view) == 0


def test_two_devices_of_one_user_share_a_key() -> None:
    view = PresenceView()
    state = view.state([info("p1"), info("p2")], lambda pid: "user-a")
    assert [m["participant_id"] for m in state["user-a"]["metas"]] == ["p1", "p2"]
    left = view.diff([], ["p2"], lambda pid: "user-a")
    assert left is not None and [m["participant_id"] for m in left["leaves"]["user-a"]["metas"]] == ["p2"]

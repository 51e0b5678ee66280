"""docs/protocol.md, `signal`: point-to-point data to one participant (or every participant of a
user), with a raw client."""

from __future__ import annotations

import pytest
from rawws import Raw, session_with


async def test_a_signal_reaches_only_its_target_and_is_acked(server) -> None:
    lead, sid, lead_id = await session_with(server.url)
    ben, chloe = await Raw.open(server.url), await Raw.open(server.url)
    ben_id = (await ben.request({"type": "join", "session": sid, "name": "Ben"}, rid=1))["you"]
    join = {"type": "join", "session": sid, "name": "Chloe", "role": "observer"}
    chloe_id = (await chloe.request(join, rid=1))["you"]
    ack = await lead.request({"type": "signal", "session": sid, "to": ben_id, "signal": {"sdp": "x"}}, rid=7)
    assert ack == {"type": "ack", "rid": 7}
    got = await ben.expect("signal")
    assert got == {"type": "signal", "session": sid, "from": lead_id, "to": ben_id, "signal": {"sdp": "x"}}
    await ben.request({"type": "signal", "session": sid, "to": lead_id, "signal": "hi"}, rid=2)
    assert (await lead.expect("signal"))["signal"] == "hi"
    # Chloe got none of those: the first signal she sees is the one sent to her.
    await lead.request({"type": "signal", "session": sid, "to": chloe_id, "signal": "yours"}, rid=8)
    assert (await chloe.expect("signal"))["signal"] == "yours"


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"to": "p00000000"}, "invalid_target"),  # nobody of that id
        ({"to": ""}, "invalid_message"),
        ({"to": "x" * 129}, "invalid_message"),
        ({"to": "p1", "signal": 2**60}, "invalid_message"),
    ],
)
async def test_bad_signals_are_refused(server, msg: dict, code: str) -> None:
    lead, sid, lead_id = await session_with(server.url)
    err = await lead.request({"type": "signal", "session": sid, **msg}, rid=3)
    assert (err["type"], err["code"], err["rid"]) == ("error", code, 3)
    own = await lead.request({"type": "signal", "session": sid, "to": lead_id}, rid=4)
    assert own["code"] == "invalid_target"  # the sender itself does not count

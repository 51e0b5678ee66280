"""A first end-to-end path through the real server."""

from __future__ import annotations


async def test_create_join_and_state(connect) -> None:
    a = await connect()
    b = await connect()
    s = await a.create("Ana")
    t = await b.join(s.id, "Ben")
    await s.set({"geometry.R": 2.5})
    await t.wait_for(lambda x: x.values.get("geometry.R") == 2.5, 2)
    assert t.state == {"geometry": {"R": 2.5}}
    assert set(s.participants) == {s.me, t.me}

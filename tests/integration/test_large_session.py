"""A large session through the Python SDK: the roster is listed, the crowd counted
(`Session.headcount`), and `Session.roster()` pages through everyone."""

from __future__ import annotations

import pytest
from support import make_config

from collective_sync.server.config import ServerConfig

LIMIT = 3


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config()
    config.session.roster_limit = LIMIT
    config.session.presence_interval = 0.05
    return config


async def test_the_crowd_is_counted_and_paged_through(connect) -> None:
    lead = await (await connect()).create("Lea")
    others = [await (await connect()).join(lead.id, f"Obs{i}", role="observer") for i in range(7)]
    await lead.wait_for(lambda s: s.headcount == 8)
    assert len(lead.participants) == LIMIT
    last = others[-1]
    assert last.me in last.participants  # a crowd member is listed to itself
    assert last.headcount == 8

    seen: list[str] = []
    after = None
    while True:
        page = await last.roster(after=after, limit=3)
        seen += [p.id for p in page.participants]
        after = page.next
        if after is None:
            break
    assert seen == [lead.me, *(o.me for o in others)]
    assert page.count.total == 8

    await others[-1].leave()
    await others[-2].leave()
    await lead.wait_for(lambda s: s.headcount == 6)
    # Someone listed leaves: the longest-present of the crowd takes its place.
    await others[0].leave()
    await lead.wait_for(lambda s: others[2].me in s.participants and s.headcount == 5)
    assert others[0].me not in lead.participants

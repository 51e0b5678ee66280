"""The host's tools over real sockets: remove (and bar the user), lock, end; who may not."""

from __future__ import annotations

import time

import jwt
import pytest
from support import make_config

from collective_sync.auth import AuthConfig
from collective_sync.client import Client, ServerError
from collective_sync.protocol.messages import Moderated, Presence
from collective_sync.server.config import ServerConfig

SECRET = "moderation-secret-of-at-least-32-bytes!"


@pytest.fixture
def server_config() -> ServerConfig:
    config = make_config()
    config.auth = AuthConfig(secret=SECRET)
    return config


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": time.time() + 3600}, SECRET, algorithm="HS256")


async def user(connect, name: str) -> Client:  # type: ignore[no-untyped-def]
    return await connect(token=token(name), discipline=False)  # type: ignore[no-any-return]


async def test_only_the_host_moderates(server, connect) -> None:
    host, ben = await user(connect, "host"), await user(connect, "ben")
    s = await host.create("Host")
    b = await ben.join(s.id, "Ben")
    assert (s.host, b.host) == (s.me, s.me)
    for action, target in (("lock", None), ("remove", s.me), ("end", None)):
        with pytest.raises(ServerError) as err:
            await b.moderate(action, target)  # type: ignore[arg-type]
        assert err.value.code == "forbidden"
    assert server.server.node.sessions[s.id].locked is False and s.me in b.participants
    with pytest.raises(ServerError) as err:
        await s.moderate("remove", "p00000000")  # nobody of that id
    assert err.value.code == "invalid_target"


async def test_a_removed_user_is_told_announced_and_cannot_come_back(server, connect) -> None:
    host, ben, cleo = await user(connect, "host"), await user(connect, "ben"), await user(connect, "cleo")
    s = await host.create("Host")
    b = await ben.join(s.id, "Ben")
    c = await cleo.join(s.id, "Cleo")
    await s.moderate("remove", b.me)
    await ben.wait_for(lambda cl: "ended" in [e.kind for e in cl.connection_events])
    (ev,) = [e.detail for e in ben.connection_events if e.kind == "ended"]
    assert (ev["session"], ev["code"]) == (s.id, "removed")
    await c.wait_for(lambda ses: b.me not in ses.participants)
    told = [e for e in c._events if isinstance(e, Moderated)]
    assert [(m.action, m.target, m.by) for m in told] == [("remove", b.me, s.me)]
    assert any(isinstance(e, Presence) and b.me in e.leaves for e in c._events)
    for attempt in (ben, await user(connect, "ben")):  # the same user, on any connection
        with pytest.raises(ServerError) as err:
            await attempt.join(s.id, "Ben again")
        assert err.value.code == "forbidden"
    assert c.me in server.server.node.sessions[s.id].participants


async def test_a_locked_session_takes_back_its_own_but_no_newcomer(server, connect) -> None:
    host, ben = await user(connect, "host"), await user(connect, "ben")
    s = await host.create("Host")
    b = await ben.join(s.id, "Ben")
    await s.moderate("lock")
    await b.wait_for(lambda ses: ses.locked)
    with pytest.raises(ServerError) as err:
        await (await user(connect, "dan")).join(s.id, "Dan")
    assert err.value.code == "session_locked"
    again = await user(connect, "ben")  # Ben, on a new connection, resumes: still welcome
    moved = await again.join(s.id, "Ben", resume=b.token)
    assert moved.me == b.me and moved.locked
    await s.moderate("unlock")
    assert (await (await user(connect, "dan")).join(s.id, "Dan")).locked is False


async def test_the_host_ends_the_session_for_everyone(server, connect) -> None:
    host, ben = await user(connect, "host"), await user(connect, "ben")
    s = await host.create("Host")
    await ben.join(s.id, "Ben")
    await s.moderate("end")
    for client in (host, ben):
        await client.wait_for(lambda cl: "ended" in [e.kind for e in cl.connection_events])
        (ev,) = [e.detail for e in client.connection_events if e.kind == "ended"]
        assert (ev["session"], ev["code"]) == (s.id, "ended")
    with pytest.raises(ServerError) as err:
        await (await user(connect, "dan")).join(s.id, "Dan")
    assert err.value.code == "session_ended"
    assert s.id not in server.server.node.sessions


async def test_a_private_session_is_joined_with_its_invite_only(server, connect) -> None:
    host, ben = await user(connect, "host"), await user(connect, "ben")
    s = await host.create("Host", public=True, private=True)  # private wins: never listed
    other = await host.create("Other", private=True)
    assert server.server.node.sessions[s.id].settings.public is False
    with pytest.raises(ServerError) as err:
        await ben.join(s.id, "Ben")
    assert (err.value.code, "invite" in err.value.message) == ("forbidden", True)
    witness = await s.invite("witness", ttl=600)
    assert (witness.role, witness.session) == ("witness", s.id) and witness.expires_at > time.time()
    b = await ben.join(s.id, "Ben", invite=witness.invite)  # asks to participate ...
    assert b.role == "observer"  # ... the invite grants listening only
    for attempt, code in (
        (lambda c: c.join(other.id, "X", invite=witness.invite), "forbidden"),  # another session
        (lambda c: c.join(s.id, "X", invite=witness.invite + "x"), "forbidden"),  # tampered
    ):
        with pytest.raises(ServerError) as err:
            await attempt(await user(connect, "cleo"))
        assert err.value.code == code
    with pytest.raises(ServerError) as err:  # only the host invites
        await b.invite()
    assert err.value.code == "forbidden"
    await s.moderate("revoke", witness.id)
    with pytest.raises(ServerError) as err:
        await (await user(connect, "dan")).join(s.id, "Dan", invite=witness.invite)
    assert (err.value.code, err.value.message) == ("forbidden", "this invite was revoked")
    assert b.me in server.server.node.sessions[s.id].participants  # who is in stays in


async def test_the_apps_role_claims_cap_and_grant(server, connect) -> None:
    def with_role(sub: str, role: str) -> str:
        claims = {"sub": sub, "exp": time.time() + 3600, "app_metadata": {"collective_role": role}}
        return jwt.encode(claims, SECRET, algorithm="HS256")

    host = await user(connect, "host")
    s = await host.create("Host")
    witness = await connect(token=with_role("wit", "witness"), discipline=False)
    w = await witness.join(s.id, "Wit", role="participant")  # asks to participate ...
    assert w.role == "observer"  # ... the app says: witness
    with pytest.raises(ServerError) as err:  # and a witness only listens
        await w.set({f"participants.{w.me}.hr": 60}, ack=True)
    assert err.value.code == "forbidden"
    with pytest.raises(ServerError) as err:
        await witness.create("Mine")
    assert err.value.code == "forbidden"
    fac = await connect(token=with_role("fac", "facilitator"), discipline=False)
    f = await fac.join(s.id, "Fac")
    assert f.participants[f.me].facilitator is True

"""Every message on the wire, declared once as msgspec structs.

This module is the executable form of docs/protocol.md: the server decodes and validates
client frames with these types (one pass, no hand-written dict checks), and both SDKs
speak exactly these shapes. Field names are camelCase on the wire (`rename="camel"`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

# --- shared constraints -------------------------------------------------------------------

Rid = Annotated[int, msgspec.Meta(ge=0, le=2**53 - 1)]
SessionId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{3,64}$")]
ParticipantId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
DisplayName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
EventName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")]
# Network time: seconds since the Unix epoch on the server's clock, microsecond resolution.
NetTime = Annotated[float, msgspec.Meta(ge=0)]
Role = Literal["leader", "participant", "observer"]
PlayoutDelay = Annotated[float, msgspec.Meta(ge=0.0, le=2.0)]
JoinRole = Literal["participant", "observer"]


class _Msg(msgspec.Struct, rename="camel", omit_defaults=True, forbid_unknown_fields=False, tag_field="type"):
    """Base of all wire messages: tagged by `type`, camelCase fields, defaults omitted."""


class SessionSettings(msgspec.Struct, rename="camel", omit_defaults=True):
    """Settings chosen by a session's creator; `public` sessions are listed by GET /api/sessions."""

    session_id: SessionId | None = None
    public: bool = False
    private: bool = False  # joined only with an invite from the host (never listed)
    ceremony_type: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    # Session-wide jitter-buffer delay D (s): everyone applies a state update at its `at` + D.
    playout_delay: PlayoutDelay = 0.15


class PlayoutDelayChange(msgspec.Struct, forbid_unknown_fields=True):
    """Payload of the `playout_delay` control event: the leader changes the session's D."""

    delay: PlayoutDelay


# --- GAA polarity protocol ----------------------------------------------------------------

Unit = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Balance = Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)]
Radians = Annotated[float, msgspec.Meta(ge=-1000.0, le=1000.0)]
Finite = Annotated[float, msgspec.Meta(ge=-1e6, le=1e6)]


class PolarityChannel(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """One of the two polarity channels (light or dark) of the GAA engine."""

    enabled: bool
    amplitude: Unit
    phase: Radians
    resonance_mode: Literal["harmonic", "chaotic", "adaptive"]


class DarkEnergyDrift(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    drift_rate: Finite
    expansion_factor: Finite


class PolaritySync(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Payload of the `polarity_sync` control event, validated by the server."""

    light_channel: PolarityChannel
    dark_channel: PolarityChannel
    polarity_balance: Balance
    dark_energy_drift: DarkEnergyDrift


# Control events whose payload the server validates; any other event name carries free JSON.
VALIDATED_CONTROL_EVENTS: dict[str, type[msgspec.Struct]] = {
    "polarity_sync": PolaritySync,
    "playout_delay": PlayoutDelayChange,
}


# --- client -> server ---------------------------------------------------------------------


class Create(_Msg, tag="create"):
    name: DisplayName
    rid: Rid | None = None
    settings: SessionSettings = msgspec.field(default_factory=SessionSettings)
    meta: dict[str, Any] = {}


class Join(_Msg, tag="join"):
    session: SessionId
    name: DisplayName
    rid: Rid | None = None
    role: JoinRole = "participant"
    meta: dict[str, Any] = {}
    # Reclaims a dropped participant (same id and role) within the grace period.
    resume: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")] | None = None
    # Highest control seq already seen; later ones still in history are replayed after `joined`.
    last_seq: Annotated[int, msgspec.Meta(ge=0)] | None = None
    invite: Annotated[str, msgspec.Meta(max_length=2048)] | None = None  # a private session's invite


class Leave(_Msg, tag="leave"):
    session: SessionId
    rid: Rid | None = None


class UpdateMeta(_Msg, tag="meta"):
    session: SessionId
    meta: dict[str, Any]
    rid: Rid | None = None


class Handover(_Msg, tag="handover"):
    session: SessionId
    to: ParticipantId
    rid: Rid | None = None


class Control(_Msg, tag="control"):
    session: SessionId
    event: EventName
    payload: Any = None
    rid: Rid | None = None
    at: NetTime | None = None


class StateSet(_Msg, tag="state_set"):
    session: SessionId
    at: NetTime
    set: Annotated[dict[str, Any], msgspec.Meta(min_length=1, max_length=256)]
    rid: Rid | None = None


class TimeRequest(_Msg, tag="time"):
    t0: float


class Moderate(_Msg, tag="moderate"):
    """The host's tools: remove a participant (and bar its user), lock/unlock joins, end,
    revoke an invite."""

    session: SessionId
    action: Literal["remove", "lock", "unlock", "end", "revoke", "facilitator", "unfacilitator"]
    target: ParticipantId | None = None  # a participant id; for `revoke`, an invite id
    rid: Rid | None = None


class CreateInvite(_Msg, tag="invite"):
    """The host asks for an invite to its session, granting `role`, valid `ttl` seconds."""

    session: SessionId
    role: Literal["participant", "witness"] = "participant"
    ttl: Annotated[float, msgspec.Meta(ge=60, le=30 * 24 * 3600)] = 24 * 3600.0
    rid: Rid | None = None


# --- WebRTC (docs/protocol.md, "Media and data channels") --------------------------------

MediaSlotName = Literal["voice", "engine"]  # a session's two streams: a live voice, a rendered sound
Sdp = Annotated[str, msgspec.Meta(min_length=1, max_length=32768)]


class RtcOffer(_Msg, tag="rtc_offer"):
    """Open (or replace) this participant's one peer connection to the server's SFU."""

    session: SessionId
    sdp: Sdp
    rid: Rid | None = None


class RtcCandidate(_Msg, tag="rtc_candidate"):
    """A trickled ICE candidate of the client's side (the server's are all in its answer)."""

    session: SessionId
    candidate: Annotated[str, msgspec.Meta(max_length=1024)]
    sdp_mid: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sdp_m_line_index: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None
    rid: Rid | None = None


class RtcPublish(_Msg, tag="rtc_publish"):
    """Go live on a slot (the leader or a facilitator), or stop (`live: false`)."""

    session: SessionId
    slot: MediaSlotName
    live: bool = True
    rid: Rid | None = None


class RtcClose(_Msg, tag="rtc_close"):
    """Close this participant's peer connection; the WebSocket carries everything again."""

    session: SessionId
    rid: Rid | None = None


class Auth(_Msg, tag="auth"):
    """A JWT: first on a connection where auth is required, and again to refresh it."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
    rid: Rid | None = None


class Signal(_Msg, tag="signal"):
    """Point-to-point data for other members (WebRTC signalling between participants): `to` is
    a participant id, or a user id (every participant of that user gets it)."""

    session: SessionId
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    signal: Any = None
    rid: Rid | None = None


class RosterRequest(_Msg, tag="roster"):
    """A page of the session's participants in join order (a large session's `joined` and
    `presence` show only the roster: see `Count`); `after` is the previous page's `next`."""

    session: SessionId
    after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 100
    rid: Rid | None = None


ClientMessage = (
    Create
    | Join
    | Leave
    | UpdateMeta
    | Handover
    | Control
    | StateSet
    | TimeRequest
    | Auth
    | Moderate
    | CreateInvite
    | RtcOffer
    | RtcCandidate
    | RtcPublish
    | RtcClose
    | Signal
    | RosterRequest
)
CLIENT_TYPES: frozenset[str] = frozenset(
    {
        "create",
        "join",
        "leave",
        "meta",
        "handover",
        "control",
        "state_set",
        "time",
        "auth",
        "moderate",
        "invite",
        "rtc_offer",
        "rtc_candidate",
        "rtc_publish",
        "rtc_close",
        "signal",
        "roster",
    }
)


# --- server -> client ---------------------------------------------------------------------


class Limits(msgspec.Struct, rename="camel"):
    max_message_bytes: int
    rate_per_second: float
    burst: int
    max_sessions: int


class Welcome(_Msg, tag="welcome"):
    server: str
    conn: str
    time: float
    limits: Limits
    auth: bool = False  # a JWT (`auth` message) is required before anything else but `time`


class ParticipantInfo(msgspec.Struct, rename="camel", omit_defaults=True):
    id: str
    name: str
    role: Role
    joined_at: float
    meta: dict[str, Any] = {}
    connected: bool = True
    facilitator: bool = False  # named by the host (or by the user's role claim): leads first
    live: list[str] = []  # media slots it is publishing ("voice", "engine")
    listening: bool = False  # its peer connection to the SFU is up (it hears the streams)


class Count(msgspec.Struct, rename="camel"):
    """How many are in a session. Beyond the roster limit only the roster (leader, host,
    facilitators, publishers and the first arrivals) is shown one by one; everyone else is
    counted here, and listed on request (`roster`)."""

    total: int
    connected: int
    observers: int
    listed: int  # on the roster; `total - listed` are only counted (0: everyone is listed again)


class Snapshot(msgspec.Struct, rename="camel"):
    """The authoritative state document: flat `path -> value` map at version `v`."""

    v: int
    values: dict[str, Any]


class MediaSlot(msgspec.Struct, rename="camel", omit_defaults=True):
    """A live stream and the map from its RTP timestamps to network time: the sample with RTP
    timestamp `rtpTs` was captured at network time `at`, and `rate` RTP ticks pass per second
    of network time. Listeners play that sample at `at` + the session's media delay."""

    slot: str
    publisher: str
    rtp_ts: int | None = None  # None until the SFU has seen the stream's first packet
    at: float | None = None
    rate: float = 48000.0


class Joined(_Msg, tag="joined"):
    session: str
    you: str
    token: str
    role: Role
    leader: str | None
    participants: list[ParticipantInfo]
    state: Snapshot
    seq: int
    settings: SessionSettings
    epoch: str = ""  # changes when the server lost state (crash): trust the snapshot, not old `v`s
    host: str | None = None  # the participant who created it (moderates)
    locked: bool = False  # no new joins (resuming still works)
    media: list[MediaSlot] = []  # the session's live streams
    count: Count | None = None  # only when `participants` is not everyone (a large session)
    rid: int | None = None


class Left(_Msg, tag="left"):
    session: str
    rid: int | None = None
    # Unsolicited: resumed from another connection, removed by the host, or the host ended it.
    reason: Literal["replaced", "removed", "ended"] | None = None


class Ack(_Msg, tag="ack"):
    rid: int
    seq: int | None = None


class Presence(_Msg, tag="presence"):
    session: str
    joins: list[ParticipantInfo] = []
    leaves: list[str] = []
    updates: list[ParticipantInfo] = []
    count: Count | None = None  # a large session's head count (at most every `presence_interval`)


class Roster(_Msg, tag="roster"):
    """Reply to `roster`: participants in join order; `next` is the `after` of the next page
    (absent on the last page)."""

    session: str
    participants: list[ParticipantInfo]
    count: Count
    next: int | None = None
    rid: int | None = None


class Invite(_Msg, tag="invite"):
    """Reply to `invite`: the token to hand out (e.g. in a link), its id (to revoke it)."""

    session: str
    invite: str
    id: str
    role: str
    expires_at: float
    rid: int | None = None


class Moderated(_Msg, tag="moderated"):
    """What the host did, told to everyone in the session."""

    session: str
    action: Literal["remove", "lock", "unlock", "end", "revoke", "facilitator", "unfacilitator"]
    by: str
    target: str | None = None


class Leader(_Msg, tag="leader"):
    session: str
    leader: str | None
    reason: Literal["handover", "failover", "vacant", "claimed"]
    previous: str | None = None


class ControlOut(_Msg, tag="control"):
    session: str
    seq: int
    at: float
    event: str
    sender: str = msgspec.field(name="from")
    payload: Any = None


class StateOut(_Msg, tag="state"):
    session: str
    v: int
    at: float
    sender: str = msgspec.field(name="from")
    set: dict[str, Any] = {}
    coalesced: bool = False


class RtcAnswer(_Msg, tag="rtc_answer"):
    session: str
    sdp: str
    rid: int | None = None


class Media(_Msg, tag="media"):
    """The session's live streams changed: who went live or stopped, or a stream's clock map."""

    session: str
    slots: list[MediaSlot] = []


class TimeReply(_Msg, tag="time"):
    t0: float
    t1: float
    t2: float


class SignalOut(_Msg, tag="signal"):
    session: str
    sender: str = msgspec.field(name="from")
    to: str = ""
    signal: Any = None


class Error(_Msg, tag="error"):
    code: str
    message: str
    rid: int | None = None
    session: str | None = None


ServerMessage = (
    Welcome
    | Joined
    | Left
    | Ack
    | Presence
    | Leader
    | ControlOut
    | StateOut
    | TimeReply
    | Error
    | Moderated
    | Invite
    | RtcAnswer
    | Media
    | SignalOut
    | Roster
)

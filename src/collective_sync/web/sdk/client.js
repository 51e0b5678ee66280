// Collective Sync browser client: docs/protocol.md over a WebSocket, with a PLL-disciplined
// network clock and playout at network time. Plain ES module, no build step.
//
//   import { Client } from '/sdk/client.js';
//   const client = await Client.connect(`ws://${location.host}/ws`);
//   const session = await client.create('Ana', { public: true });
//   session.addEventListener('apply', (e) => engine.apply(e.detail));
//
// Like the Python SDK: requests resolve with their reply or reject with a ServerError; the
// session's `values` is the received snapshot, `applied` what should be playing now. Unlike it,
// the browser client reconnects on its own (backoff.js, one socket at a time) and rejoins every
// session with its resume token and last control seq, so no control message is lost across a
// drop; and it keeps each session's token in sessionStorage, so a reloaded page comes back as the
// same participant.
//
// Connection events on the Client (CustomEvent `detail`), and `client.state`:
//   connecting {attempt, delay}   a reconnect attempt waits `delay` s, then opens a socket
//   open {reconnect}              socket open and `welcome` received
//   resumed {session, same, epochChanged, you}   a session rejoined after a reconnect
//   lost {code, reason}           the connection dropped (reconnects unless state is 'closed')
//   ended {session, code, reason} a session is gone (also on the Session); no more retries
//   state: 'connecting' | 'open' | 'lost' | 'closed'

import { backoffDelay } from './backoff.js';
import { DisciplinedClock } from './clock.js';
import { sampleDelay, sampleOffset } from './estimator.js';
import { JitterBuffer } from './jitter.js';
import { Scheduler } from './scheduler.js';
import { VersionGuard } from './versions.js';

/** The browser's clock in seconds (epoch-based, monotonic within a page). */
export const browserClock = () => (performance.timeOrigin + performance.now()) / 1000;

const OPEN_TIMEOUT = 5; // s for a socket to open and say welcome (the server allows 5 s too)
const REJOIN_TIMEOUT = 5; // s for a rejoin's reply; then this socket is given up
const SAVE_INTERVAL = 1000; // ms: at most one storage write a second as controls arrive
const NO_RECONNECT = new Set([1002, 1008, 1009]); // the client broke a rule: retrying repeats it
const GONE = new Set(['session_ended', 'session_not_found']);
const AUTH_REFUSED = new Set(['unauthorized', 'token_expired', 'forbidden']);
const LEFT_BECAUSE = {
  replaced: 'this participant continues on another connection',
  removed: 'the host removed you from this session',
  ended: 'the host ended this session',
};

/** A JWT's `exp` (seconds), read without verifying (the server verifies): when to refresh. */
function tokenExpiry(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const exp = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4))).exp;
    return Number.isFinite(exp) ? exp : null;
  } catch {
    return null;
  }
}
const SESSION_KEY = 'collective-sync:session:';
const NAME_KEY = 'collective-sync:name';

/** Web Storage of that kind if this page may use it (private modes, sandboxes and file:// may not). */
function webStorage(kind) {
  try {
    const store = globalThis[kind];
    store.setItem('collective-sync:probe', '1');
    store.removeItem('collective-sync:probe');
    return store;
  } catch {
    return null;
  }
}

export class ServerError extends Error {
  constructor(code, message, session) {
    super(`${code}: ${message}`);
    this.code = code;
    this.session = session;
  }
}

/** Nested view of a flat path map. */
export function nest(values) {
  const root = {};
  for (const [path, value] of Object.entries(values)) {
    const parts = path.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (typeof node[p] === 'object' && node[p]) || (node[p] = {});
    node[parts[parts.length - 1]] = value;
  }
  return root;
}

export class Session extends EventTarget {
  constructor(client, joined) {
    super();
    this.client = client;
    this.playout = new Playout(this, joined.settings.playoutDelay ?? 0.15, client.playoutLead);
    this.resumedSame = false; // set by Client.join: came back as the participant it was before
    this.adopt(joined);
  }

  /** (Re)initialise from a `joined` reply: on join, and again after a resume. */
  adopt(joined) {
    // Another epoch: the server lost what happened since its last snapshot, so the old seq and
    // the values played are not to be trusted; the snapshot is the truth now.
    this.epochChanged = this.epoch !== undefined && joined.epoch !== undefined && joined.epoch !== this.epoch;
    this.epoch = joined.epoch;
    this.id = joined.session;
    this.me = joined.you;
    this.token = joined.token;
    this.settings = joined.settings;
    this.leader = joined.leader;
    this.host = joined.host ?? null; // the participant who moderates
    this.locked = joined.locked ?? false;
    // A large session lists only its roster here; the rest is counted (see headcount).
    this.participants = new Map(joined.participants.map((p) => [p.id, p]));
    this.count = joined.count ?? null;
    this.values = { ...joined.state.values };
    this.version = joined.state.v;
    this.versions = new VersionGuard(joined.state.v); // the snapshot is the truth up to its v
    this.media = joined.media ?? []; // live streams (MediaSlot), see rtc.js
    this.seq = this.epochChanged ? joined.seq : Math.max(this.seq ?? 0, joined.seq);
    this.playout.seed(this.values, this.epochChanged);
    this.connected = true; // joined on the client's current socket
  }

  /** What this member asked to be (a leader rejoins as a participant; an observer stays one). */
  get joinRole() { return this.role === 'observer' ? 'observer' : 'participant'; }
  get name() { return this.participants.get(this.me)?.name ?? 'guest'; }
  get role() { return this.participants.get(this.me)?.role ?? 'participant'; }
  get isLeader() { return this.leader === this.me; }
  /** Everyone in the session: the latest head count while some are only counted, else those listed. */
  get headcount() {
    const c = this.count;
    return c && c.total > c.listed ? c.total : this.participants.size;
  }

  /** A page of everyone in join order, {participants, count, next}: pass `next` as `after` for
   *  the next page. A view of this moment, for a large session that lists only its roster. */
  roster(after = null, limit = 100) {
    const msg = { type: 'roster', session: this.id, limit };
    if (after !== null) msg.after = after;
    return this.client.request(msg);
  }
  get state() { return nest(this.values); }
  get applied() { return this.playout.values; }

  /** Set state paths (null deletes), stamped with network time `at` (default now). */
  set(values, at = null) {
    this.client.send({ type: 'state_set', session: this.id, at: at ?? this.client.networkTime(), set: values });
  }

  async control(event, payload = null, at = null) {
    const msg = { type: 'control', session: this.id, event, payload };
    if (at !== null) msg.at = at;
    return (await this.client.request(msg)).seq;
  }

  polaritySync(payload, at = null) { return this.control('polarity_sync', payload, at); }
  /** (Host only) an invite granting `role` ('participant' | 'witness') for `ttl` seconds:
   *  resolves to {invite, id, role, expiresAt}; moderate('revoke', id) withdraws it. */
  invite(role = 'participant', ttl = 86400) {
    return this.client.request({ type: 'invite', session: this.id, role, ttl });
  }

  /** The host's tools: 'remove' (target: a participant id), 'lock', 'unlock', 'end', 'revoke'. */
  moderate(action, target = null) {
    const msg = { type: 'moderate', session: this.id, action };
    if (target) msg.target = target;
    return this.client.request(msg);
  }
  /** Send `signal` (any JSON) to one participant, or every participant of a user id, only;
   *  it arrives there as a 'signal' event {from, to, signal}. Never stored. */
  signal(to, signal) { return this.client.request({ type: 'signal', session: this.id, to, signal }); }
  updateMeta(meta) { return this.client.request({ type: 'meta', session: this.id, meta }); }
  handover(to) { return this.client.request({ type: 'handover', session: this.id, to }); }

  /** Leave for good. Offline, only this page forgets it: the server drops it after its grace period. */
  async leave() {
    try {
      if (this.client.connected && this.connected) await this.client.request({ type: 'leave', session: this.id });
    } finally {
      this.playout.close();
      this.connected = false;
      this.client.sessions.delete(this.id);
      this.client.forget(this.id);
    }
  }

  /** Fold one server message into the view and tell listeners (`presence`, `state`, …). */
  apply(msg, arrivalLocal) {
    switch (msg.type) {
      case 'state': {
        // The same update may come over the data channel and the WebSocket, in any order: only
        // paths newer than what was applied go on (a duplicate or an older copy changes nothing).
        const set = this.versions.admit(msg.set, msg.v);
        if (set === null) return;
        if (set !== msg.set) msg = { ...msg, set };
        for (const [path, value] of Object.entries(set)) {
          if (value === null) delete this.values[path]; else this.values[path] = value;
        }
        this.version = Math.max(this.version, msg.v);
        this.playout.onState(msg, this.client.networkTime(arrivalLocal));
        break;
      }
      case 'media':
        this.media = msg.slots ?? [];
        break;
      case 'presence':
        for (const p of msg.joins ?? []) this.participants.set(p.id, p);
        for (const p of msg.updates ?? []) this.participants.set(p.id, p);
        for (const id of msg.leaves ?? []) this.participants.delete(id);
        if (msg.count) this.count = msg.count;
        break;
      case 'leader':
        this.leader = msg.leader;
        break;
      case 'moderated':
        if (msg.action === 'lock' || msg.action === 'unlock') this.locked = msg.action === 'lock';
        break;
      case 'control':
        this.seq = Math.max(this.seq, msg.seq);
        this.playout.onControl(msg);
        this.client.saveSoon();
        break;
      default:
        break;
    }
    this.dispatchEvent(new CustomEvent(msg.type, { detail: msg }));
  }
}

/**
 * Applies state at `at + D` and controls at `at`, on the disciplined network clock.
 *
 * With `lead` > 0 each change is handed out that many seconds before it is due, with its `due`
 * network time: an audio engine schedules it on its own sample clock (timers are far too coarse),
 * and needs it before the audio thread renders that instant, which is ahead of the speakers by
 * the output latency.
 */
class Playout {
  constructor(session, delay, lead = 0) {
    this.session = session;
    this.lead = lead;
    this.buffer = new JitterBuffer(delay);
    this.scheduler = new Scheduler((net) => session.client.network.toLocal(net));
    this.values = {};
    this.timer = null;
  }

  /** Start from a snapshot; `replace` drops what is not in it (the server lost it). */
  seed(values, replace = false) {
    if (replace) this.values = {};
    Object.assign(this.values, values);
  }

  onState(msg, arrivalNetwork) {
    const item = { at: msg.at, sender: msg.from, seq: msg.v, keys: Object.keys(msg.set), payload: msg };
    for (const late of this.buffer.push(item, arrivalNetwork)) this.apply('state', late.at + this.buffer.delay, msg, true);
    this.plan();
  }

  onControl(msg) {
    this.scheduler.schedule(msg.at, msg);
    this.plan();
  }

  close() { clearTimeout(this.timer); this.timer = null; }

  /** Sleep until the next due network time, mapped to the local clock (re-planned every 250 ms). */
  plan() {
    clearTimeout(this.timer);
    const due = [this.buffer.nextDue(), this.scheduler.nextDue()].filter((t) => t !== null);
    if (!due.length) return;
    const client = this.session.client;
    const wait = client.network.toLocal(Math.min(...due) - this.lead) - client.clock();
    this.timer = setTimeout(() => this.run(), Math.max(0, Math.min(wait, 0.25)) * 1000);
  }

  run() {
    const now = this.session.client.networkTime() + this.lead;
    // One timeline: whatever is due now goes out in due order, state before control on a tie.
    const due = [
      ...this.buffer.popDue(now).map((item) => ['state', item.at + this.buffer.delay, item.payload]),
      ...this.scheduler.popDue(now).map(([at, msg]) => ['control', at, msg]),
    ];
    due.sort((a, b) => a[1] - b[1] || (a[0] === b[0] ? 0 : a[0] === 'state' ? -1 : 1));
    for (const [kind, at, msg] of due) this.apply(kind, at, msg, false);
    this.plan();
  }

  apply(kind, due, msg, late) {
    const client = this.session.client;
    const local = client.clock();
    if (kind === 'state') {
      for (const [path, value] of Object.entries(msg.set)) {
        if (value === null) delete this.values[path]; else this.values[path] = value;
      }
    } else if (msg.event === 'playout_delay') {
      this.buffer.setDelay(msg.payload.delay);
    }
    const detail = { kind, due, network: client.network.toNetwork(local), local, late, msg };
    this.session.dispatchEvent(new CustomEvent('apply', { detail }));
  }
}

export class Client extends EventTarget {
  /**
   * @param {string} url ws:// URL of the server's /ws endpoint
   * @param {{clock?: () => number, lockTimeout?: number, reconnect?: boolean, playoutLead?: number,
   *   storage?: boolean}} [options]
   *   `clock` is the local clock (injectable); `playoutLead` hands changes out that many seconds
   *   before they are due (see Playout), for audio scheduling; `storage` keeps each session's
   *   resume token in sessionStorage so that a reloaded page resumes (default true); `token` is
   *   the app's JWT, or a function (may be async) giving a fresh one, for servers that require it
   */
  static async connect(url, options = {}) {
    const client = new Client(url, options);
    await client.open();
    await client.waitFor(() => client.network.locked, options.lockTimeout ?? 3).catch(() => {});
    return client;
  }

  /** The display name this browser used last ('' if none, or if localStorage is unavailable). */
  static savedName() {
    try {
      return webStorage('localStorage')?.getItem(NAME_KEY) ?? '';
    } catch {
      return '';
    }
  }

  static saveName(name) {
    try {
      webStorage('localStorage')?.setItem(NAME_KEY, String(name));
    } catch { /* a convenience only */ }
  }

  constructor(url, { clock = browserClock, reconnect = true, playoutLead = 0, storage = true, token = null } = {}) {
    super();
    this.url = url;
    this.tokenSource = token;
    this.refreshTimer = null;
    this.clock = clock; // injectable: tests give pages offset and skewed clocks
    this.reconnect = reconnect;
    this.playoutLead = playoutLead;
    this.network = new DisciplinedClock();
    this.sessions = new Map();
    this.errors = [];
    this.pending = new Map();
    this.timePending = new Map();
    this.rid = 0;
    this.state = 'connecting';
    this.closing = false;
    this.connected = false; // the current socket said welcome
    this.ws = null; // the one socket: every other was closed and silenced before it opened
    this.opened = false; // a socket said welcome before: later opens are reconnects
    this.reconnecting = false;
    this.store = storage ? webStorage('sessionStorage') : null;
    this.saveTimer = null;
    this.probeTimer = null;
    this.lastProbeT0 = -Infinity; // the local reading of the last probe sent
  }

  /** Network time now (never backwards, even if the local clock is), or at local reading `local`. */
  networkTime(local = null) {
    if (local !== null) return this.network.started ? this.network.toNetwork(local) : local;
    const t = this.clock();
    if (!this.network.started) return t;
    const net = this.network.read(t);
    if (this.network.events.length) this.emitClockEvents();
    return net;
  }

  /** Steps, holds and re-acquisitions of the network clock, as `clock` events (players re-anchor). */
  emitClockEvents() {
    for (const detail of this.network.drainEvents()) this.dispatchEvent(new CustomEvent('clock', { detail }));
  }

  /** The host says the local clock may have jumped (woke up, page shown again): probe fast. */
  suspectClock() {
    this.network.suspect(this.clock());
    if (this.connected) { clearTimeout(this.probeTimer); this.probe(); }
  }

  /** Listen for what tells a page it slept, or that it goes away. Called once the socket is up; idempotent. */
  watchLifecycle() {
    if (this.lifecycle || typeof document === 'undefined') return;
    this.lifecycle = () => { if (document.visibilityState !== 'hidden') this.suspectClock(); };
    for (const ev of ['visibilitychange', 'resume', 'pageshow']) document.addEventListener(ev, this.lifecycle);
    // A reload resumes from storage: the seq stored must be the last one seen.
    this.pagehide = () => this.saveAll();
    globalThis.addEventListener?.('pagehide', this.pagehide);
  }

  /** Open the first connection (Client.connect does this); rejects if it cannot. */
  async open() {
    try {
      await this.openAuthenticated();
    } catch (err) {
      this.state = 'closed';
      this.dropSocket('refused');
      throw err;
    }
  }

  /** Open a socket; on a server that requires a token, authenticate before anything else. */
  async openAuthenticated() {
    await this.openSocket();
    if (this.welcome?.auth) await this.refreshToken();
  }

  /**
   * Send a token (`token`, else a fresh one from the `token` option) over the live connection:
   * on connect, and again before it expires (scheduled by itself when the option is a function).
   */
  async refreshToken(token = null) {
    const source = this.tokenSource;
    token ??= typeof source === 'function' ? await source() : source;
    if (!token) throw new ServerError('unauthorized', 'this server requires a token: Client.connect(url, {token})');
    await this.request({ type: 'auth', token });
    clearTimeout(this.refreshTimer);
    const exp = tokenExpiry(token);
    if (exp !== null && typeof source === 'function') {
      const wait = Math.max(1, (exp - Date.now() / 1000) * 0.9 - 5); // well before it runs out
      this.refreshTimer = setTimeout(() => this.refreshToken().catch(() => {}), wait * 1000);
    }
  }

  async create(name, { sessionId, public: isPublic = false, private: isPrivate = false, ceremonyType, playoutDelay = 0.15, meta = {} } = {}) {
    const settings = { public: isPublic, playoutDelay };
    if (isPrivate) settings.private = true; // joined with an invite only (session.invite())
    if (sessionId) settings.sessionId = sessionId;
    if (ceremonyType) settings.ceremonyType = ceremonyType;
    return this.request({ type: 'create', name, settings, meta });
  }

  /**
   * Join a session. Without an explicit `resume`, a session this tab was in (sessionStorage) is
   * resumed as the same participant; if the server no longer knows the token, it joins afresh
   * under the stored name and role. `session.resumedSame` says which happened. A session that is
   * gone rejects with a ServerError (`session_ended` or `session_not_found`) and is forgotten.
   * `name` and `role` may be left out when a stored record gives them.
   */
  async join(session, name, { role, meta = {}, resume, lastSeq, invite } = {}) {
    const saved = resume === undefined ? this.savedSession(session) : null;
    if (saved) {
      const again = { name: name ?? saved.name, role: role ?? saved.role, meta, invite };
      try {
        const s = await this.joinOnce(session, { ...again, resume: saved.token, lastSeq: saved.seq });
        s.resumedSame = true;
        if (saved.epoch !== undefined && s.epoch !== undefined && saved.epoch !== s.epoch) s.epochChanged = true;
        return s;
      } catch (err) {
        if (err instanceof ServerError && GONE.has(err.code)) this.forget(session);
        // A stored token the server does not know (expired, or mangled): come back as someone new.
        if (!(err instanceof ServerError) || !['resume_failed', 'invalid_message'].includes(err.code)) throw err;
      }
      const s = await this.joinOnce(session, again);
      s.resumedSame = false;
      return s;
    }
    const s = await this.joinOnce(session, { name, role: role ?? 'participant', meta, resume, lastSeq, invite });
    s.resumedSame = Boolean(resume);
    return s;
  }

  joinOnce(session, { name, role, meta, resume, lastSeq, invite }) {
    const msg = { type: 'join', session, name, role, meta };
    if (resume) msg.resume = resume;
    if (invite) msg.invite = invite; // a private session's invite (from the host's session.invite())
    if (Number.isInteger(lastSeq) && lastSeq >= 0) msg.lastSeq = lastSeq;
    return this.request(msg);
  }

  /** This tab's stored record of a session ({token, seq, name, role, epoch}), or null. */
  savedSession(sessionId) {
    try {
      const rec = JSON.parse(this.store?.getItem(SESSION_KEY + sessionId) ?? 'null');
      return rec && typeof rec.token === 'string' && typeof rec.name === 'string' ? rec : null;
    } catch {
      return null;
    }
  }

  send(msg) {
    if (!this.connected) throw new Error('not connected');
    this.ws.send(JSON.stringify(msg));
  }

  /** A request, resolved with its reply; rejected at once while not connected (it could not be sent). */
  request(msg, timeout = 10) {
    if (!this.connected) return Promise.reject(new Error('not connected'));
    const rid = ++this.rid;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(rid); reject(new Error('request timed out')); }, timeout * 1000);
      this.pending.set(rid, { resolve, reject, timer, msg });
      this.send({ ...msg, rid });
    });
  }

  /** Resolve once `predicate()` holds; re-checked after every frame. */
  waitFor(predicate, timeout = 10) {
    return new Promise((resolve, reject) => {
      if (predicate()) { resolve(); return; }
      const check = () => { if (predicate()) { done(); resolve(); } };
      const timer = setTimeout(() => { done(); reject(new Error('timed out')); }, timeout * 1000);
      const done = () => { clearTimeout(timer); this.removeEventListener('frame', check); };
      this.addEventListener('frame', check);
    });
  }

  /** Close for good, also in the middle of a reconnect (its wait and its socket are cut short). */
  close() {
    this.closing = true;
    this.state = 'closed';
    clearTimeout(this.backoffTimer);
    clearTimeout(this.refreshTimer);
    this.wake?.();
    if (this.lifecycle) {
      for (const ev of ['visibilitychange', 'resume', 'pageshow']) document.removeEventListener(ev, this.lifecycle);
      globalThis.removeEventListener?.('pagehide', this.pagehide);
    }
    this.saveAll();
    clearTimeout(this.probeTimer);
    for (const s of this.sessions.values()) s.playout.close();
    this.dropSocket('client closed');
  }

  // --- connection ----------------------------------------------------------------------

  /** Open a socket and wait for its welcome. Exactly one socket at a time: the previous one is
   *  closed with its handlers detached first, so nothing it still says reaches this client. */
  openSocket() {
    this.dropSocket('replaced');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => this.dropSocket('timed out'), OPEN_TIMEOUT * 1000);
      const settle = (err) => {
        clearTimeout(timer);
        this.welcomed = this.abortOpen = null;
        if (err) reject(err); else resolve();
      };
      this.welcomed = () => settle(null);
      this.abortOpen = (why) => settle(new Error(`cannot connect to ${this.url} (${why})`));
      ws.onmessage = (ev) => { if (this.ws === ws) this.onFrame(ev.data, this.clock()); };
      ws.onerror = () => {}; // a close event follows, with the code
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        if (this.connected) this.onClose(ev); else this.dropSocket(`closed with ${ev.code}`);
      };
    });
  }

  /** Let go of the current socket (closing it if it is not closed yet) and of what waited on it. */
  dropSocket(why) {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000);
    this.detach(`connection closed (${why})`);
    this.abortOpen?.(why);
  }

  /** The socket is gone: stop probing, fail what waits for a reply, mark sessions not joined. */
  detach(why) {
    this.connected = false;
    clearTimeout(this.probeTimer);
    this.timePending.clear();
    for (const w of this.pending.values()) {
      clearTimeout(w.timer);
      w.reject(new Error(why));
    }
    this.pending.clear();
    for (const s of this.sessions.values()) s.connected = false;
  }

  /** The server's side of an open connection ended it (or the network did). */
  onClose(ev) {
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = this.ws.onerror = null;
    this.ws = null;
    this.detach(`connection closed (${ev.code})`);
    const final = this.closing || !this.reconnect || NO_RECONNECT.has(ev.code);
    this.state = final ? 'closed' : 'lost';
    this.dispatchEvent(new CustomEvent('lost', { detail: { code: ev.code, reason: ev.reason } }));
    if (!final && !this.reconnecting) this.reconnectLoop();
  }

  get stopped() { return this.closing || this.state === 'closed'; }

  /** Reopen with backoff until every session is rejoined (or gone); one socket at a time. */
  async reconnectLoop() {
    this.reconnecting = true;
    // Who each session was before the drop: an attempt may rejoin and then lose its socket.
    const before = new Map([...this.sessions.values()].map((s) => [s.id, { me: s.me, epoch: s.epoch }]));
    try {
      for (let attempt = 0; !this.stopped; attempt++) {
        const delay = backoffDelay(attempt);
        this.state = 'connecting';
        this.dispatchEvent(new CustomEvent('connecting', { detail: { attempt, delay } }));
        await new Promise((resolve) => {
          this.wake = resolve;
          this.backoffTimer = setTimeout(resolve, delay * 1000);
        });
        this.wake = null;
        if (this.stopped) return;
        try {
          await this.openAuthenticated();
          await this.rejoinAll(before);
          return;
        } catch (err) {
          if (this.stopped) return;
          if (err instanceof ServerError && AUTH_REFUSED.has(err.code)) {
            // The token is refused: retrying cannot help. The app must connect with a new one.
            this.dropSocket('token refused');
            this.state = 'closed';
            this.dispatchEvent(new CustomEvent('lost', { detail: { code: 4001, reason: err.message } }));
            return;
          }
          this.dropSocket('rejoin failed'); // a half-rejoined socket is not kept
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  /** Rejoin every session on the new socket, then announce each (`resumed`, or `ended`). */
  async rejoinAll(before) {
    const done = [];
    for (const s of [...this.sessions.values()]) {
      const was = before.get(s.id) ?? { me: s.me, epoch: s.epoch };
      if (!(await this.rejoin(s))) continue; // gone: `ended` was announced
      const epochChanged = was.epoch !== undefined && s.epoch !== undefined && s.epoch !== was.epoch;
      done.push({ session: s.id, same: s.me === was.me, epochChanged, you: s.me });
    }
    for (const detail of done) this.dispatchEvent(new CustomEvent('resumed', { detail }));
  }

  /** Resume one session; with the token refused, join afresh (same name and role). False if gone. */
  async rejoin(s) {
    const msg = { type: 'join', session: s.id, name: s.name, role: s.joinRole, meta: s.participants.get(s.me)?.meta ?? {}, lastSeq: s.seq };
    try {
      await this.request({ ...msg, resume: s.token }, REJOIN_TIMEOUT);
      return true;
    } catch (err) {
      if (!(err instanceof ServerError)) throw err; // the connection failed: retry with backoff
      if (GONE.has(err.code)) return this.end(s, err.code, err.message);
      if (err.code !== 'resume_failed') throw err;
    }
    try {
      await this.request(msg, REJOIN_TIMEOUT);
      return true;
    } catch (err) {
      if (err instanceof ServerError && GONE.has(err.code)) return this.end(s, err.code, err.message);
      throw err;
    }
  }

  /** The session is gone for good: no more retries, no stored token; tell the session and the client. */
  end(s, code, reason) {
    s.playout.close();
    s.connected = false;
    this.sessions.delete(s.id);
    this.forget(s.id);
    const detail = { session: s.id, code, reason };
    s.dispatchEvent(new CustomEvent('ended', { detail }));
    this.dispatchEvent(new CustomEvent('ended', { detail }));
    return false;
  }

  // --- per-tab storage (sessionStorage: survives a reload, not the tab) -------------------------

  save(s) {
    try {
      const rec = { token: s.token, seq: s.seq, name: s.name, role: s.joinRole, epoch: s.epoch };
      this.store?.setItem(SESSION_KEY + s.id, JSON.stringify(rec));
    } catch { /* full or refused: the page just will not resume after a reload */ }
  }

  saveAll() {
    clearTimeout(this.saveTimer);
    this.saveTimer = null;
    for (const s of this.sessions.values()) this.save(s);
  }

  /** A control moved the seq on: store it, at most once a second. */
  saveSoon() {
    if (this.store && this.saveTimer === null) this.saveTimer = setTimeout(() => this.saveAll(), SAVE_INTERVAL);
  }

  forget(sessionId) {
    try {
      this.store?.removeItem(SESSION_KEY + sessionId);
    } catch { /* nothing stored */ }
  }

  // --- internals -----------------------------------------------------------------------

  probe() {
    if (!this.connected) return;
    // Date.now() keeps counting through sleep where performance.now() may not: the two parting
    // by more than a crystal can (0.5 s between probes) means the local clock jumped.
    const gap = Date.now() / 1000 - this.clock();
    if (this.wallGap !== undefined && Math.abs(gap - this.wallGap) > 0.5) this.network.suspect(this.clock());
    this.wallGap = gap;
    const t0 = this.clock();
    if (t0 === this.lastProbeT0) {
      // The local clock has stood still since the last probe (a suspended page whose clock
      // stops): an exchange now would be stamped wrong. Look again shortly. (A clock set
      // back is another matter: it reads differently, and the exchange tells the estimator.)
      this.network.suspect(t0);
      this.probeTimer = setTimeout(() => this.probe(), this.network.nextProbeInterval() * 1000);
      return;
    }
    this.lastProbeT0 = t0;
    this.timePending.set(t0, true);
    this.send({ type: 'time', t0 });
    setTimeout(() => this.timePending.delete(t0), 2000); // lost: forget it
    this.probeTimer = setTimeout(() => this.probe(), this.network.nextProbeInterval() * 1000);
  }

  onFrame(data, arrival) {
    let msgs;
    try {
      msgs = JSON.parse(data);
    } catch {
      return;
    }
    for (const msg of Array.isArray(msgs) ? msgs : [msgs]) this.dispatch(msg, arrival);
    this.dispatchEvent(new Event('frame'));
  }

  dispatch(msg, arrival) {
    const waiter = msg.rid !== undefined ? this.pending.get(msg.rid) : undefined;
    switch (msg.type) {
      case 'welcome': {
        this.welcome = msg;
        this.connected = true;
        this.state = 'open';
        this.watchLifecycle();
        this.probe();
        const reconnect = this.opened;
        this.opened = true;
        this.welcomed?.();
        this.dispatchEvent(new CustomEvent('open', { detail: { reconnect } }));
        break;
      }
      case 'time':
        if (this.timePending.delete(msg.t0)) this.onTimeSample({ t0: msg.t0, t1: msg.t1, t2: msg.t2, t3: arrival });
        break;
      case 'joined': {
        let session = this.sessions.get(msg.session);
        if (session) session.adopt(msg); else session = new Session(this, msg);
        this.sessions.set(session.id, session);
        this.save(session);
        this.settle(msg.rid, session);
        break;
      }
      case 'left':
        // Unsolicited: resumed from another connection (a duplicated tab), removed by the host,
        // or the host ended the session.
        if (msg.reason && this.sessions.has(msg.session)) {
          this.end(this.sessions.get(msg.session), msg.reason, LEFT_BECAUSE[msg.reason] ?? msg.reason);
        } else this.settle(msg.rid, msg);
        break;
      case 'ack':
      case 'invite':
      case 'rtc_answer':
      case 'roster':
        this.settle(msg.rid, msg);
        break;
      case 'error':
        if (waiter) this.settle(msg.rid, null, new ServerError(msg.code, msg.message, msg.session));
        else if (this.sessions.has(msg.session)) this.sessions.get(msg.session).apply(msg, arrival);
        else { this.errors.push(msg); this.dispatchEvent(new CustomEvent('error', { detail: msg })); }
        break;
      default:
        this.sessions.get(msg.session)?.apply(msg, arrival);
    }
  }

  /**
   * State from a session's WebRTC data channel (rtc.js): the same messages as on the WebSocket,
   * one per channel message, unordered and lossy; they take the same path (the per-path version
   * guard, then the playout jitter buffer). Anything but `state` for that session is ignored.
   */
  receiveChannel(sessionId, data, arrival = this.clock()) {
    let msgs;
    try {
      msgs = JSON.parse(data);
    } catch {
      return;
    }
    const session = this.sessions.get(sessionId);
    if (!session) return;
    for (const msg of Array.isArray(msgs) ? msgs : [msgs]) {
      if (msg?.type === 'state' && msg.session === sessionId) session.apply(msg, arrival);
    }
    this.dispatchEvent(new Event('frame'));
  }

  /** Feed one exchange to the clock; tell listeners its round trip and how far off the clock was. */
  onTimeSample(sample) {
    // Measured before the update: this exchange's offset against the clock as it stood. Noisy (half
    // the path's delay asymmetry and queueing), but an honest picture of the clock's error.
    const residual = this.network.locked ? sampleOffset(sample) - this.network.phase(sample.t3) : null;
    this.network.addSample(sample);
    const detail = { sample, rtt: sampleDelay(sample), residual, error: this.network.errorAt(sample.t3) };
    this.dispatchEvent(new CustomEvent('timesample', { detail }));
    if (this.network.events.length) this.emitClockEvents();
  }

  settle(rid, value, error = null) {
    const waiter = this.pending.get(rid);
    if (!waiter) return;
    this.pending.delete(rid);
    clearTimeout(waiter.timer);
    if (error) waiter.reject(error); else waiter.resolve(value);
  }
}

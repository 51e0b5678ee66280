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
// the browser client reconnects on its own and rejoins every session with its resume token and
// last control seq, so no control message is lost across a drop.

import { DisciplinedClock } from './clock.js';
import { sampleDelay, sampleOffset } from './estimator.js';
import { JitterBuffer } from './jitter.js';
import { Scheduler } from './scheduler.js';

/** The browser's clock in seconds (epoch-based, monotonic within a page). */
export const browserClock = () => (performance.timeOrigin + performance.now()) / 1000;

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
    this.adopt(joined);
  }

  /** (Re)initialise from a `joined` reply: on join, and again after a resume. */
  adopt(joined) {
    this.id = joined.session;
    this.me = joined.you;
    this.token = joined.token;
    this.settings = joined.settings;
    this.leader = joined.leader;
    this.participants = new Map(joined.participants.map((p) => [p.id, p]));
    this.values = { ...joined.state.values };
    this.version = joined.state.v;
    this.seq = Math.max(this.seq ?? 0, joined.seq);
    this.playout.seed(this.values);
  }

  get role() { return this.participants.get(this.me)?.role ?? 'participant'; }
  get isLeader() { return this.leader === this.me; }
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
  updateMeta(meta) { return this.client.request({ type: 'meta', session: this.id, meta }); }
  handover(to) { return this.client.request({ type: 'handover', session: this.id, to }); }

  async leave() {
    await this.client.request({ type: 'leave', session: this.id });
    this.playout.close();
    this.client.sessions.delete(this.id);
  }

  /** Fold one server message into the view and tell listeners (`presence`, `state`, …). */
  apply(msg, arrivalLocal) {
    switch (msg.type) {
      case 'state':
        for (const [path, value] of Object.entries(msg.set)) {
          if (value === null) delete this.values[path]; else this.values[path] = value;
        }
        this.version = msg.v;
        this.playout.onState(msg, this.client.networkTime(arrivalLocal));
        break;
      case 'presence':
        for (const p of msg.joins ?? []) this.participants.set(p.id, p);
        for (const p of msg.updates ?? []) this.participants.set(p.id, p);
        for (const id of msg.leaves ?? []) this.participants.delete(id);
        break;
      case 'leader':
        this.leader = msg.leader;
        break;
      case 'control':
        this.seq = Math.max(this.seq, msg.seq);
        this.playout.onControl(msg);
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

  seed(values) { Object.assign(this.values, values); }

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
   * @param {{clock?: () => number, lockTimeout?: number, reconnect?: boolean, playoutLead?: number}} [options]
   *   `clock` is the local clock (injectable); `playoutLead` hands changes out that many seconds
   *   before they are due (see Playout), for audio scheduling
   */
  static async connect(url, options = {}) {
    const client = new Client(url, options);
    await client.open();
    await client.waitFor(() => client.network.locked, options.lockTimeout ?? 3).catch(() => {});
    return client;
  }

  constructor(url, { clock = browserClock, reconnect = true, playoutLead = 0 } = {}) {
    super();
    this.url = url;
    this.clock = clock; // injectable: tests give pages offset and skewed clocks
    this.reconnect = reconnect;
    this.playoutLead = playoutLead;
    this.network = new DisciplinedClock();
    this.sessions = new Map();
    this.errors = [];
    this.pending = new Map();
    this.timePending = new Map();
    this.rid = 0;
    this.closing = false;
    this.connected = false;
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

  /** Listen for what tells a page it slept. Called once the socket is up; idempotent. */
  watchLifecycle() {
    if (this.lifecycle || typeof document === 'undefined') return;
    this.lifecycle = () => { if (document.visibilityState !== 'hidden') this.suspectClock(); };
    for (const ev of ['visibilitychange', 'resume', 'pageshow']) document.addEventListener(ev, this.lifecycle);
  }

  open() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      this.welcomed = resolve;
      ws.onmessage = (ev) => this.onFrame(ev.data, this.clock());
      ws.onerror = () => { if (!this.connected) reject(new Error(`cannot connect to ${this.url}`)); };
      ws.onclose = (ev) => this.onClose(ev);
    });
  }

  async create(name, { sessionId, public: isPublic = false, ceremonyType, playoutDelay = 0.15, meta = {} } = {}) {
    const settings = { public: isPublic, playoutDelay };
    if (sessionId) settings.sessionId = sessionId;
    if (ceremonyType) settings.ceremonyType = ceremonyType;
    return this.request({ type: 'create', name, settings, meta });
  }

  async join(session, name, { role = 'participant', meta = {}, resume, lastSeq } = {}) {
    const msg = { type: 'join', session, name, role, meta };
    if (resume) msg.resume = resume;
    if (lastSeq !== undefined) msg.lastSeq = lastSeq;
    return this.request(msg);
  }

  send(msg) {
    if (!this.connected) throw new Error('not connected');
    this.ws.send(JSON.stringify(msg));
  }

  request(msg, timeout = 10) {
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

  close() {
    this.closing = true;
    if (this.lifecycle) {
      for (const ev of ['visibilitychange', 'resume', 'pageshow']) document.removeEventListener(ev, this.lifecycle);
    }
    clearTimeout(this.probeTimer);
    for (const s of this.sessions.values()) s.playout.close();
    this.ws?.close(1000);
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
      case 'welcome':
        this.welcome = msg;
        this.connected = true;
        this.watchLifecycle();
        this.probe();
        this.welcomed?.();
        break;
      case 'time':
        if (this.timePending.delete(msg.t0)) this.onTimeSample({ t0: msg.t0, t1: msg.t1, t2: msg.t2, t3: arrival });
        break;
      case 'joined': {
        let session = this.sessions.get(msg.session);
        if (session) session.adopt(msg); else session = new Session(this, msg);
        this.sessions.set(session.id, session);
        this.settle(msg.rid, session);
        break;
      }
      case 'left':
      case 'ack':
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

  async onClose(ev) {
    const wasConnected = this.connected;
    this.connected = false;
    clearTimeout(this.probeTimer);
    for (const [rid, w] of this.pending) {
      clearTimeout(w.timer);
      w.reject(new Error(`connection closed (${ev.code})`));
      this.pending.delete(rid);
    }
    this.dispatchEvent(new CustomEvent('disconnected', { detail: { code: ev.code, reason: ev.reason } }));
    if (this.closing || !this.reconnect || !wasConnected) return;
    for (let attempt = 0; !this.closing; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
      this.dispatchEvent(new CustomEvent('reconnecting', { detail: { attempt } }));
      try {
        await this.open();
        for (const s of this.sessions.values()) {
          await this.join(s.id, s.participants.get(s.me)?.name ?? 'guest', { resume: s.token, lastSeq: s.seq });
        }
        this.dispatchEvent(new Event('reconnected'));
        return;
      } catch (err) {
        this.dispatchEvent(new CustomEvent('error', { detail: { code: 'reconnect_failed', message: String(err) } }));
      }
    }
  }
}

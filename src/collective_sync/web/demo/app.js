// The collective GAA demo: create or join a session, steer or follow the engine, hear it in step.
//
// Everything timing-related is the SDK's: the disciplined network clock, playout at network time
// (handed to the audio thread as soon as the jitter buffer releases it, so that it can place each
// change on its exact sample however busy this page's main thread is), the
// GAA engine in an AudioWorklet. This file is the UI around it.
//
// URL parameters: `s` (session id; the invite link), `invite` (a private session's invite token,
// from the host's "Copy invite link" / "Copy listener link"), `name` (join at once under this name), and,
// for demonstrations of the clock discipline, `offset` (seconds) and `skew` (ppm) to run this
// page on a deliberately wrong local clock.

import { backoffDelay } from '/sdk/backoff.js';
import { Client, ServerError } from '/sdk/client.js';
import { RtcLink, rtcSupported } from '/sdk/rtc.js';
import { DEFAULTS, DEFAULT_BASE, Engine, leaderChange, polarityChanges } from '/gaa/engine.js';
import { GaaPlayer } from '/gaa/player.js';
import { checkName, checkSession, initial } from './forms.js';
import { ClockPanel } from './panel.js';
import { PRESETS, ceremonyLabel } from './presets.js';
import { GeometryView } from './visual.js';

const LEAD = 0.1; // seconds ahead of due that changes reach the audio thread until the audio starts
const SEND_INTERVAL = 50; // ms between a leader's sends while dragging (20 Hz; the server allows 200/s)
const POLARITY_PATHS = ['polarity.balance', 'polarity.light.amplitude', 'polarity.dark.amplitude'];
const ERROR_TEXT = {
  session_not_found: 'That session does not exist (any more). Check the link, or start a new one.',
  session_ended: 'That session has ended. Start a new one, or join another.',
  not_leader: 'Only the leader can change the sound.',
  rate_limited: 'Too many changes at once; slow down a little.',
  too_many_sessions: 'This connection is in too many sessions.',
  invalid_message: 'The server could not accept that. Check the name (1–64 characters) and the session link, then try again.',
  session_locked: 'This session is locked by its host: nobody new can join until they unlock it.',
  session_exists: 'A session with that id is already running. Create again for a new id.',
  too_many_connections: 'You are signed in on too many devices or tabs. Close one, then try again.',
  unauthorized: 'This server asks you to sign in first. Reload the page, or sign in in the app.',
  token_expired: 'Your sign-in has expired. Sign in again, then reload.',
  resume_failed: 'You were away too long to carry on where you were. Join the session again.',
  invalid_target: 'That person is not here any more. Pick someone who is connected.',
  forbidden: 'You are not allowed to do that in this session.',
  state_full: 'This session cannot take more settings. Change existing ones instead.',
  bad_timestamp: "This device's clock is far off. Wait a moment for it to sync, then try again.",
  too_large: 'That was too big to send.',
  malformed: 'The page sent something the server could not read. Reload the page.',
  unknown_type: 'The page and the server do not match (an old page?). Reload the page.',
  not_in_session: 'You are not in this session any more. Join it again.',
  already_joined: 'You are already in this session (maybe in another tab).',
  rtc_unavailable: 'Live streams are not available on this server right now; the session works without them.',
};
/** A code no message above covers: what to do, with the code for support. */
const UNKNOWN_ERROR = (code) => `Something went wrong (${code}). Try again; if it keeps happening, reload the page.`;
// A private session refuses a join (`forbidden`): with an invite, it is revoked, expired or for
// another session; without one, the session needs one.
const INVITE_REFUSED = 'This invite is not valid any more — ask the host for a new link.';
const INVITE_NEEDED = 'This session is private — ask the host for an invite link.';
const CONFIRM_MS = 5000; // a two-step button (Remove, End session) waits this long for its confirmation

const GONE = new Set(['session_ended', 'session_not_found']);
const MOVING_MS = 1200; // how long a follower's control stays marked after the leader moved it
const LOBBY_REFRESH_MS = 5000; // the lobby's list is fetched again this often while it is shown
const LOBBY_ROWS = 8;

/** How long ago, in words ("just now", "5 min ago", "2 h ago"). */
function ago(seconds) {
  if (!(seconds >= 60)) return 'just now';
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

/** `AT:AMOUNT,AT:AMOUNT` → [[AT, AMOUNT], ...] (seconds). */
const pairs = (text) => (text ? text.split(',').map((p) => p.split(':').map(Number)) : []);

/**
 * The page's local clock: the browser's, or a deliberately wrong one. `offset` (s) and `skew`
 * (ppm); `jump=AT:AMOUNT` sets it forward (+) or back (−) AMOUNT s at AT s after load, and
 * `freeze=AT:DURATION` makes it stand still for DURATION s from AT s, as performance.now() does
 * while a phone sleeps (the page keeps running here, so its exchanges show the frozen clock).
 */
function makeClock() {
  const offset = Number(params.get('offset') ?? 0);
  const skew = Number(params.get('skew') ?? 0) * 1e-6;
  const jumps = pairs(params.get('jump'));
  const freezes = pairs(params.get('freeze'));
  const ref = (performance.timeOrigin + performance.now()) / 1000;
  const perfToLocal = (ms) => {
    let t = (performance.timeOrigin + ms) / 1000;
    const since = t - ref;
    for (const [at, d] of freezes) if (since > at) t -= Math.min(since - at, d); // stands still
    let extra = 0;
    for (const [at, amount] of jumps) if (since >= at) extra += amount;
    return t + offset + (t - ref) * skew + extra;
  };
  return { perfToLocal, clock: () => perfToLocal(performance.now()), offset, skew, scripted: jumps.length + freezes.length };
}

function toast(text, kind = 'info') {
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.textContent = text;
  $('toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
}

function describe(err) {
  if (err instanceof ServerError) return ERROR_TEXT[err.code] ?? UNKNOWN_ERROR(err.code);
  return String(err?.message ?? err);
}

/** Draw `text` as a QR code (quiet zone of 4 modules, dark on white) on `canvas`; false when
 *  the QR module is not installed (served from /vendor/ only after `npm ci`, see serve.sh). */
async function drawQr(canvas, text) {
  let qrcode;
  try {
    ({ default: qrcode } = await import('/vendor/qrcode.mjs'));
  } catch {
    return false;
  }
  const qr = qrcode(0, 'M'); // the smallest version that holds it; medium error correction
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const cell = Math.max(3, Math.floor(264 / (n + 8)));
  canvas.width = canvas.height = (n + 8) * cell;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#000000';
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) if (qr.isDark(r, c)) ctx.fillRect((c + 4) * cell, (r + 4) * cell, cell, cell);
  }
  return true;
}

/** A roster badge. */
function mark(kind, text, title) {
  const el = document.createElement('span');
  el.className = `badge ${kind}`;
  el.textContent = text;
  el.title = title;
  return el;
}

function hue(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return h;
}

class App {
  constructor() {
    this.sim = makeClock();
    this.client = null;
    this.session = null;
    this.player = null;
    this.mirror = new Engine(); // the leader's view of the timeline it writes (cycle anchors)
    this.pending = {}; // state paths the leader changed since the last send
    this.polarityDirty = false;
    this.sendTimer = null;
    this.lastSend = -Infinity;
    this.errors = []; // every error shown, for tests and support
    // A private session's invite, from the page's link (`s` + `invite`) or a pasted one: {sid, token}.
    this.invite = params.get('invite') ? { sid: params.get('s'), token: params.get('invite') } : null;
    this.lastInviteLink = null; // the last link the host copied (also shown in a toast)
    this.confirming = null; // the two-step button waiting for its second press ('end' or a participant id)
    this.confirmTimer = null;
    this.rtc = null; // the session's WebRTC link (live streams, state over a data channel), if any
    this.streamVolume = 1;
    this.streamMuted = false;
    this.duck = null; // the local engine's gain while another participant's engine is streamed
    this.visual = new GeometryView($('visual'), () => this.client.networkTime());
    this.moving = new Map(); // path -> timer of its "being moved" mark
    this.volume = 1; // the listener's own level of the engine, and its mute
    this.muted = false;
  }

  async boot() {
    this.bindLobby();
    this.bindRoom();
    this.bindEnded();
    const name = Client.savedName();
    if (name) for (const form of ['create-form', 'join-form']) $(form).elements.name.value = name;
    await this.connect();
    const sid = params.get('s');
    // This tab was in that session (a reload): come back as the same participant, no questions.
    if (sid && this.client.savedSession(sid)) await this.join(sid, null, true);
    else if (sid && params.get('name')) {
      // An invite link with a name: join at once, unless the link's id or name cannot be sent.
      const link = checkSession(sid);
      const named = checkName(params.get('name'));
      if (link.error || named.error) {
        await this.showLobby(link.error ? null : sid);
        if (link.error) this.fieldMessage('join', $('join-form').elements.session, link.error);
        else this.fieldMessage('join', $('join-form').elements.name, named.error);
      } else await this.join(sid, named.name);
    } else {
      await this.showLobby(sid);
      // An invite page: the name is all that is missing (or nothing, with a remembered name).
      const form = $('join-form');
      if (sid) (form.elements.name.value ? form.querySelector('button[type=submit]') : form.elements.name).focus();
    }
  }

  async connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    for (let attempt = 0; ; attempt++) {
      try {
        this.client = await Client.connect(url, { clock: this.sim.clock, playoutLead: LEAD });
        break;
      } catch {
        this.setConn('offline', 'Offline');
        this.banner('Cannot reach the server. Retrying…');
        await new Promise((r) => setTimeout(r, backoffDelay(attempt) * 1000));
      }
    }
    this.banner(null);
    this.setConn('online', 'Connected');
    const c = this.client;
    this.panel = new ClockPanel(c, $('plot'));
    c.addEventListener('timesample', (e) => this.panel.add(e.detail));
    // Not leaving on pagehide: a reload resumes the same participant (the SDK keeps its token in
    // sessionStorage), and a closed tab leaves when the server's grace period ends.
    c.addEventListener('lost', () => this.onConnection());
    c.addEventListener('connecting', (e) => { this.attempt = e.detail.attempt; this.onConnection(); });
    c.addEventListener('open', () => this.onConnection());
    c.addEventListener('resumed', (e) => this.onResumed(e.detail));
    c.addEventListener('ended', (e) => { if (e.detail.session === this.session?.id) this.showEnded(e.detail.code); });
    c.addEventListener('error', (e) => this.showError(e.detail.code, e.detail.message));
    setInterval(() => this.tick(), 250);
  }

  /** Whether this page can talk to its session now (connected, and rejoined after a drop). */
  get live() { return this.client?.state === 'open' && (!this.session || this.session.connected); }

  /** The connection changed state: say so, and lock the session's controls while it is down. */
  onConnection() {
    const state = this.client.state;
    if (state === 'open') {
      this.setConn(this.live ? 'online' : 'connecting', this.live ? 'Connected' : 'Rejoining…');
      if (this.live) this.banner(null);
    } else if (state === 'connecting') {
      this.setConn('connecting', `Reconnecting… (attempt ${this.attempt + 1})`);
      this.banner('Connection lost. Reconnecting…');
    } else if (state === 'lost') {
      this.setConn('offline', 'Offline');
      this.banner('Connection lost. Reconnecting…');
    } else {
      this.setConn('offline', 'Disconnected');
      this.banner('The server closed the connection. Reload the page to reconnect.');
    }
    this.renderRoom();
  }

  onResumed({ session, same, epochChanged }) {
    if (session !== this.session?.id) return;
    if (!same) toast('Rejoined as a new participant.');
    else if (epochChanged) toast('Reconnected. The server restarted: its last few changes may be lost.');
    else toast('Reconnected; nothing was missed.');
    this.wasLeader = null; // start the controls (and a leader's timeline) again from the snapshot
    this.onConnection();
  }

  // --- lobby -------------------------------------------------------------------------------

  bindLobby() {
    $('create-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const { name, error } = checkName(f.get('name'));
      if (!this.fieldMessage('create', ev.target.elements.name, error)) return;
      Client.saveName(name);
      try {
        const isPrivate = f.get('private') === 'on'; // never listed, whatever "List it publicly" says
        const ceremony = String(f.get('ceremony')) || undefined;
        const session = await this.client.create(name, {
          public: !isPrivate && f.get('public') === 'on', private: isPrivate, ceremonyType: ceremony,
        });
        this.enter(session);
        // The ceremony's starting sound, sent as any change of the leader's (one state update).
        for (const [path, value] of Object.entries(PRESETS[ceremony]?.values ?? {})) this.change(path, value);
      } catch (err) {
        this.showError(err.code, describe(err));
      }
    });
    const form = $('create-form').elements;
    const syncPrivate = () => {
      form.public.disabled = form.private.checked;
      $('private-note').hidden = !form.private.checked;
    };
    form.private.addEventListener('change', syncPrivate);
    syncPrivate();
    $('join-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = new FormData(ev.target);
      const fields = ev.target.elements;
      const { sid, invite, error } = checkSession(f.get('session'));
      if (!this.fieldMessage('join', fields.session, error)) return;
      const named = checkName(f.get('name'));
      if (!this.fieldMessage('join', fields.name, named.error)) return;
      if (invite) this.invite = { sid, token: invite }; // a pasted link carries its invite
      Client.saveName(named.name);
      await this.join(sid, named.name);
    });
  }

  /** Show why a field cannot be sent (`error`), on its form, and focus it; or clear the form's
   *  message. Returns whether the field is fine. */
  fieldMessage(form, field, error) {
    for (const el of $(`${form}-form`).elements) el.removeAttribute('aria-invalid');
    if (form === 'join') this.joinMessage(error ? 'invalid_input' : null, error ?? null);
    else {
      $('create-msg').hidden = !error;
      $('create-msg').textContent = error ?? '';
      if (error) this.errors.push({ code: 'invalid_input', text: error });
    }
    if (!error) return true;
    field.setAttribute('aria-invalid', 'true');
    field.focus();
    return false;
  }

  /** A message about joining, kept on the join form (and in `errors`); null clears it. */
  joinMessage(code, text) {
    $('join-msg').hidden = !text;
    $('join-msg').textContent = text ?? '';
    if (text) this.errors.push({ code, text });
  }

  /** Join `sid`; `resuming`: this tab was in it (the SDK resumes from storage, `name` may be null). */
  async join(sid, name, resuming = false) {
    const invite = this.invite?.sid === sid ? this.invite.token : null;
    try {
      this.enter(await this.client.join(sid, name ?? undefined, invite ? { invite } : {}));
    } catch (err) {
      if (resuming && GONE.has(err.code)) { this.showEnded(err.code); return; }
      this.showLobby(sid);
      if (err.code === 'forbidden') this.joinMessage(err.code, invite ? INVITE_REFUSED : INVITE_NEEDED);
      else if (err.code === 'session_locked') this.joinMessage(err.code, ERROR_TEXT.session_locked);
      else { this.joinMessage(null, null); this.showError(err.code, describe(err)); }
    }
  }

  async showLobby(sid) {
    this.visual.stop();
    $('lobby').hidden = false;
    $('room').hidden = true;
    $('ended').hidden = true;
    $('session-pill').hidden = true;
    $('join-msg').hidden = true;
    if (sid) $('join-form').elements.session.value = sid;
    await this.refreshLobby();
    clearInterval(this.lobbyTimer);
    this.lobbyTimer = setInterval(() => { if (!$('lobby').hidden) this.refreshLobby(); }, LOBBY_REFRESH_MS);
  }

  /** The listed sessions with someone in them, fullest first: a row says what it is (ceremony,
   *  leader), how many are there and since when; pressing it joins under the name given. */
  async refreshLobby() {
    let sessions;
    try {
      ({ sessions } = await (await fetch('/api/sessions')).json());
    } catch { return; } // the list is a convenience: kept as it was
    const list = $('public-list');
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.sid : null;
    sessions.sort((a, b) => b.participants - a.participants || a.createdAt - b.createdAt);
    const now = this.client?.networkTime() ?? Date.now() / 1000;
    list.replaceChildren(...sessions.slice(0, LOBBY_ROWS).map((s) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'ghost session-row';
      b.dataset.sid = s.id;
      const title = document.createElement('span');
      title.className = 'row-title';
      title.textContent = `${ceremonyLabel(s.ceremonyType)} · ${s.leader ? `led by ${s.leader.name}` : 'nobody leading'}`;
      const meta = document.createElement('span');
      meta.className = 'row-meta muted';
      meta.textContent = `${s.participants === 1 ? '1 person' : `${s.participants} people`} · started ${ago(now - s.createdAt)}`;
      b.append(title, meta);
      b.addEventListener('click', () => this.joinListed(s.id));
      li.append(b);
      return li;
    }));
    $('public-empty').hidden = sessions.length > 0;
    if (focused) list.querySelector(`[data-sid="${CSS.escape(focused)}"]`)?.focus();
  }

  /** A listed session was pressed: join it under the join form's name, or ask for one. */
  async joinListed(sid) {
    const form = $('join-form').elements;
    form.session.value = sid;
    const named = checkName(form.name.value);
    if (!this.fieldMessage('join', form.name, named.error)) return;
    Client.saveName(named.name);
    await this.join(sid, named.name);
  }

  // --- room --------------------------------------------------------------------------------

  enter(session) {
    this.session = session;
    clearInterval(this.lobbyTimer);
    // A joiner keeps its invite in the address: a reload after the server forgot it still gets in.
    const invite = this.invite?.sid === session.id ? `&invite=${encodeURIComponent(this.invite.token)}` : '';
    history.replaceState(null, '', `/?s=${encodeURIComponent(session.id)}${invite}`);
    this.joinMessage(null, null);
    $('lobby').hidden = true;
    $('ended').hidden = true;
    $('room').hidden = false;
    $('session-pill').hidden = false;
    $('session-id').textContent = session.id;
    for (const kind of ['presence', 'leader']) session.addEventListener(kind, (e) => this.onRoster(kind, e.detail));
    session.addEventListener('apply', (e) => this.onApply(e.detail));
    session.addEventListener('moderated', (e) => this.onModerated(e.detail));
    session.addEventListener('error', (e) => this.showError(e.detail.code, ERROR_TEXT[e.detail.code] ?? UNKNOWN_ERROR(e.detail.code)));
    this.wasLeader = null;
    this.visual.reset(session.applied, this.client.networkTime());
    this.visual.start();
    this.renderRoom();
    // Focus moves with the screen: to the next thing to do here, hearing the session (or, with
    // audio already on after a rejoin, the room's first heading).
    if (!this.player?.running) $('audio-btn').focus();
    else $('room').querySelector('h2').focus();
    this.openRtc(session);
  }

  /**
   * Listen to (and, leading, publish) the session's live streams over WebRTC. Without WebRTC in
   * this browser, or when the server has none to offer (`rtc_unavailable`), the page stays on
   * the WebSocket, silently: the session works as before, without streams.
   */
  async openRtc(session) {
    await this.closeRtc();
    if (!rtcSupported()) { this.renderRoom(); return; }
    const link = new RtcLink(session, { perfToLocal: this.sim.perfToLocal });
    this.rtc = link;
    link.setVolume(this.streamVolume);
    link.setMuted(this.streamMuted);
    for (const ev of ['listening', 'live', 'media', 'unavailable']) link.addEventListener(ev, () => this.renderRoom());
    try {
      await link.open();
    } catch {
      if (this.rtc === link) this.rtc = null;
      await link.close().catch(() => {});
    }
    this.renderRoom();
  }

  async closeRtc() {
    const link = this.rtc;
    this.rtc = null;
    await link?.close().catch(() => {});
  }

  /** Whether this participant may go live (the leader, or a facilitator). */
  get canPublish() {
    const s = this.session;
    return Boolean(s) && (s.isLeader || Boolean(s.participants.get(s.me)?.facilitator));
  }

  /** A Go live toggle: start or stop publishing the microphone ('voice') or the engine's output. */
  async toggleLive(slot) {
    const link = this.rtc;
    if (!link || this.liveBusy) return;
    this.liveBusy = true;
    this.renderRoom();
    try {
      if (link.live.includes(slot)) await link.unpublish(slot);
      else if (slot === 'voice') await link.publishMic();
      else {
        if (!this.player?.running) await this.toggleAudio();
        if (!this.player?.running) return;
        await link.publishNode('engine', this.player.ctx, this.player.analyser);
      }
    } catch (err) {
      this.showError(err.code ?? 'live', err instanceof ServerError ? describe(err) : `Could not go live: ${describe(err)}`);
    } finally {
      this.liveBusy = false;
      this.renderRoom();
    }
  }

  renderStream() {
    const s = this.session;
    const link = this.rtc;
    $('stream').hidden = !link;
    if (!link) return;
    const publish = this.canPublish && this.live;
    $('go-live').hidden = !this.canPublish;
    for (const slot of ['voice', 'engine']) {
      const b = $(`live-${slot}`);
      const on = link.live.includes(slot);
      b.setAttribute('aria-pressed', String(on));
      b.textContent = `${on ? '● ' : ''}${slot === 'voice' ? 'Voice' : 'Engine'}`;
      b.disabled = !publish || this.liveBusy || (!on && !link.pc);
    }
    // Lost the lead: stop publishing (the server no longer forwards it anyway).
    if (!this.canPublish && link.live.length && !this.liveBusy) for (const slot of link.live) link.unpublish(slot).catch(() => {});
    $('stream-mute').setAttribute('aria-pressed', String(this.streamMuted));
    $('stream-mute').textContent = this.streamMuted ? 'Unmute stream' : 'Mute stream';
    const others = (s.media ?? []).filter((m) => m.publisher !== s.me);
    const names = others.map((m) => `${m.slot} from ${s.participants.get(m.publisher)?.name ?? 'someone'}`);
    const heard = names.length ? `Listening: ${names.join(', ')}` : 'Listening (nobody else is live)';
    $('stream-state').textContent = !link.listening ? 'Connecting the stream…'
      : link.live.length ? `You are live: ${link.live.join(', ')}. ${names.length ? heard : ''}`.trim() : heard;
  }

  bindRoom() {
    $('copy-link').addEventListener('click', () => this.copyLink('participant'));
    $('share-btn').addEventListener('click', () => this.openShare());
    $('share-close').addEventListener('click', () => $('share-sheet').close());
    $('share-sheet').addEventListener('close', () => $('share-btn').focus());
    $('share-copy').addEventListener('click', async () => {
      const link = $('share-link').value;
      try { await navigator.clipboard.writeText(link); toast('Invite link copied.'); } catch { $('share-link').select(); }
    });
    $('share-native').addEventListener('click', () => {
      navigator.share({ title: 'Join my session', url: $('share-link').value }).catch(() => {});
    });
    $('copy-listen').addEventListener('click', () => this.copyLink('witness'));
    $('lock-session').addEventListener('click', () => this.moderate(this.session.locked ? 'unlock' : 'lock'));
    $('end-session').addEventListener('click', () => this.twoStep('end', () => this.moderate('end')));
    $('audio-btn').addEventListener('click', () => this.toggleAudio());
    $('volume').addEventListener('input', (ev) => {
      this.volume = Number(ev.target.value);
      ev.target.setAttribute('aria-valuetext', `${Math.round(this.volume * 100)} %`);
      this.applyVolume();
    });
    $('mute-btn').addEventListener('click', () => {
      this.muted = !this.muted;
      $('mute-btn').setAttribute('aria-pressed', String(this.muted));
      $('mute-btn').textContent = this.muted ? 'Unmute' : 'Mute';
      this.applyVolume();
      this.tellAudio();
    });
    for (const slot of ['voice', 'engine']) $(`live-${slot}`).addEventListener('click', () => this.toggleLive(slot));
    $('stream-volume').addEventListener('input', (ev) => {
      this.streamVolume = Number(ev.target.value);
      this.rtc?.setVolume(this.streamVolume);
    });
    $('stream-mute').addEventListener('click', () => {
      this.streamMuted = !this.streamMuted;
      this.rtc?.setMuted(this.streamMuted);
      this.renderRoom();
    });
    $('leave-btn').addEventListener('click', async () => {
      await this.closeRtc();
      await this.session.leave().catch(() => {});
      this.session = null;
      history.replaceState(null, '', '/');
      this.showLobby(null);
    });
    for (const input of document.querySelectorAll('#controls input[type=range]')) {
      input.addEventListener('input', () => this.change(input.dataset.path, Number(input.value)));
    }
  }

  get isHost() { return Boolean(this.session) && this.session.me === this.session.host; }
  get isPrivate() { return Boolean(this.session?.settings?.private); }

  /**
   * Copy a link to this session. A private session's host asks the server for an invite (a
   * `participant` one, or a `witness` one that joins as a listener) and puts it in the link; a
   * public session's link is its id. The link is also kept in `demo.lastInviteLink` (for tests,
   * and for browsers that refuse the clipboard, which get it in a toast instead).
   */
  /** The link that lets someone in as `role` (a private session's carries an invite the host
   *  asks the server for); null after showing why not. */
  async inviteLink(role) {
    const s = this.session;
    let link = `${location.origin}/?s=${encodeURIComponent(s.id)}`;
    if (this.isPrivate) {
      try {
        const { invite } = await s.invite(role);
        link += `&invite=${encodeURIComponent(invite)}`;
      } catch (err) {
        this.showError(err.code, describe(err));
        return null;
      }
    }
    this.lastInviteLink = link;
    return link;
  }

  async copyLink(role) {
    const link = await this.inviteLink(role);
    if (!link) return;
    const what = role === 'witness' ? 'Listener link' : 'Invite link';
    try { await navigator.clipboard.writeText(link); toast(`${what} copied.`); } catch { toast(`${what}: ${link}`); }
  }

  /** The share sheet: the invite as a QR code to scan, the link to copy or hand to the system's
   *  share menu. */
  async openShare() {
    const link = await this.inviteLink('participant');
    if (!link) return;
    $('share-link').value = link;
    const drawn = await drawQr($('qr'), link);
    $('qr').hidden = !drawn;
    $('qr-note').textContent = drawn ? "Point a phone's camera at the code to join." : 'Copy the link and send it.';
    $('share-native').hidden = !navigator.share;
    $('share-sheet').showModal();
  }

  /** A host's action; a refusal is shown like any other error. */
  async moderate(action, target = null) {
    try {
      await this.session?.moderate(action, target);
    } catch (err) {
      this.showError(err.code, describe(err));
    }
  }

  /** A destructive button acts on its second press within CONFIRM_MS (no modal dialog). */
  twoStep(key, action) {
    clearTimeout(this.confirmTimer);
    if (this.confirming === key) {
      this.confirming = null;
      action();
    } else {
      this.confirming = key;
      this.confirmTimer = setTimeout(() => { this.confirming = null; this.renderRoom(); }, CONFIRM_MS);
    }
    this.renderRoom();
  }

  onModerated({ action, target }) {
    const s = this.session;
    if (action === 'lock' || action === 'unlock') {
      toast(action === 'lock' ? 'The host locked this session: nobody new can join.' : 'The host unlocked this session.');
    } else if (action === 'remove' && target !== s?.me) {
      const p = s?.participants.get(target);
      if (p) toast(`${p.name} was removed by the host.`);
    }
    this.renderRoom();
  }

  /** The panel shown instead of retrying when the session is gone (ended, or forgotten by the server). */
  bindEnded() {
    const panel = document.createElement('section');
    panel.id = 'ended';
    panel.className = 'card ended';
    panel.hidden = true;
    panel.tabIndex = -1; // focused when shown, so that keyboard and screen-reader users land on it
    panel.setAttribute('aria-labelledby', 'ended-title');
    panel.innerHTML = `<div role="alert"><h2 id="ended-title">This session has ended</h2>
      <p class="muted">It is no longer running on the server. Start a new one, or pick another from the lobby.</p></div>
      <div class="actions"><button id="ended-new" type="button" class="primary">Start a new one</button>
      <button id="ended-lobby" type="button" class="ghost">Back to lobby</button></div>`;
    $('room').before(panel);
    $('ended-new').addEventListener('click', () => {
      this.showLobby(null);
      const name = $('create-form').elements.name;
      (name.value ? $('create-form').querySelector('button[type=submit]') : name).focus();
    });
    $('ended-lobby').addEventListener('click', () => {
      this.showLobby(null);
      $('join-form').elements.session.focus();
    });
  }

  showEnded(code) {
    this.visual.stop();
    const gone = 'It is no longer running on the server. Start a new one, or pick another from the lobby.';
    const [title, text] = {
      // the same participant resumed in another tab or window
      replaced: ['You continue in another tab', 'You opened this session somewhere else, so this page let go of it.'],
      removed: ['You were removed from this session', 'The host removed you. Start a session of your own, or join another.'],
      ended: this.isHost ? ['You ended this session', gone] : ['The host ended this session', gone],
    }[code] ?? ['This session has ended', gone];
    $('ended-title').textContent = title;
    $('ended').querySelector('p').textContent = text;
    clearTimeout(this.confirmTimer);
    this.confirming = null;
    const name = this.session?.name;
    if (name) $('create-form').elements.name.value = name; // "start a new one" keeps it
    this.session = null;
    this.closeRtc();
    if (this.player?.running) this.toggleAudio(); // nothing left to play
    history.replaceState(null, '', '/');
    this.errors.push({ code, text: $('ended-title').textContent });
    $('lobby').hidden = true;
    $('room').hidden = true;
    $('session-pill').hidden = true;
    $('ended').hidden = false;
    $('ended').focus();
    this.onConnection();
  }

  onRoster(kind, msg) {
    if (kind === 'leader') {
      const p = this.session.participants.get(msg.leader);
      const who = msg.leader === this.session.me ? 'You are' : `${p?.name ?? 'Someone'} is`;
      if (msg.reason === 'failover') toast(`The leader left. ${who} now leading.`);
      else if (msg.reason === 'handover') toast(`${who} now leading.`);
    }
    this.renderRoom();
  }

  renderRoom() {
    const s = this.session;
    if (!s) return;
    const lead = s.isLeader;
    const live = this.live; // offline, nothing would reach the server: nothing to press
    if (lead !== this.wasLeader) {
      this.wasLeader = lead;
      if (lead) this.takeLead();
      this.renderControls(s.applied);
    }
    $('controls').classList.toggle('readonly', !lead || !live);
    for (const input of document.querySelectorAll('#controls input')) input.disabled = !lead || !live;
    $('leave-btn').disabled = !live;
    const leader = s.participants.get(s.leader);
    $('steer').textContent = lead ? 'You are steering' : leader ? `Following ${leader.name}` : 'No leader';
    $('steer').className = `badge${lead ? ' lead' : ''}`;
    const people = [...s.participants.values()].sort((a, b) => a.joinedAt - b.joinedAt);
    // A large session lists its roster (leader, host, facilitators, first arrivals); the rest is a count.
    const more = s.headcount - people.length;
    $('count').textContent = more > 0 ? `${s.headcount} here · ${more} not listed` : `${people.length} here`;
    // Rows are rebuilt: a button that had the focus (a Remove turning into Confirm) keeps it.
    const focused = $('people').contains(document.activeElement) ? document.activeElement.dataset.key : null;
    $('people').replaceChildren(...people.map((p) => this.personRow(p)));
    if (focused) $('people').querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
    // Everyone sees whether the session is locked; the host also gets the tools.
    const host = this.isHost;
    $('locked-badge').hidden = !s.locked;
    $('host-tools').hidden = !host;
    const lockBtn = $('lock-session');
    lockBtn.setAttribute('aria-pressed', String(Boolean(s.locked)));
    lockBtn.title = s.locked ? 'Locked: press to let new people join again' : 'Let nobody new join';
    lockBtn.disabled = !live;
    const end = $('end-session');
    const confirmEnd = this.confirming === 'end';
    end.textContent = confirmEnd ? 'Confirm: end for everyone' : 'End session';
    end.classList.toggle('confirm', confirmEnd);
    end.disabled = !live;
    // A private session's links carry an invite that only the host can ask for.
    $('copy-link').hidden = $('share-btn').hidden = this.isPrivate && !host;
    $('copy-listen').hidden = !(this.isPrivate && host);
    $('copy-link').disabled = $('copy-listen').disabled = $('share-btn').disabled = this.isPrivate && !live;
    this.renderStream();
  }

  personRow(p) {
    const s = this.session;
    const li = document.createElement('li');
    li.dataset.id = p.id;
    li.classList.toggle('away', p.connected === false);
    const avatar = document.createElement('span');
    avatar.className = 'avatar';
    avatar.style.background = `hsl(${hue(p.id)} 70% 70%)`;
    avatar.textContent = initial(p.name);
    avatar.setAttribute('aria-hidden', 'true');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = p.name + (p.id === s.me ? ' (you)' : '') + (p.id === s.host ? ' · host' : '');
    const role = document.createElement('span');
    role.className = `badge role${p.id === s.leader ? ' lead' : ''}`;
    role.textContent = p.id === s.leader ? 'leader' : p.role;
    li.append(avatar, name, role);
    if (p.live?.length) { // publishing a stream
      const badge = document.createElement('span');
      badge.className = 'badge live';
      badge.textContent = `● Live: ${p.live.join(', ')}`;
      li.append(badge);
    }
    // Whether they hear the session: sound on in their page (their meta's `audio`), or their
    // peer connection up (the live streams); muted says they turned it down to nothing.
    const audio = p.meta?.audio;
    if (audio === 'muted') li.append(mark('muted', 'muted', 'Has muted the sound'));
    else if (audio === 'on' || p.listening) li.append(mark('listening', 'listening', 'Hears the session'));
    if (p.connected === false) li.append(mark('away', 'away', 'Connection lost; may come back'));
    if (s.isLeader && p.id !== s.me && p.role !== 'observer' && p.connected !== false) {
      const b = document.createElement('button');
      b.className = 'ghost small';
      b.textContent = 'Hand over';
      b.disabled = !this.live;
      b.addEventListener('click', () => s.handover(p.id).catch((err) => this.showError(err.code, describe(err))));
      li.append(b);
    }
    if (this.isHost && p.id !== s.me) {
      const key = `remove:${p.id}`;
      const confirm = this.confirming === key;
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `ghost small remove${confirm ? ' confirm' : ''}`;
      b.textContent = confirm ? 'Confirm' : 'Remove';
      b.setAttribute('aria-label', confirm ? `Confirm removing ${p.name}` : `Remove ${p.name}`);
      b.dataset.key = key;
      b.disabled = !this.live;
      b.addEventListener('click', () => this.twoStep(key, () => this.moderate('remove', p.id)));
      li.append(b);
    }
    return li;
  }

  /** Became leader: continue the timeline from what is playing (phase anchor included). */
  takeLead() {
    this.mirror = new Engine();
    this.mirror.apply(this.session.values, this.client.networkTime());
  }

  renderControls(values) {
    const v = { ...DEFAULTS, 'oscillators.base': DEFAULT_BASE, ...values };
    for (const input of document.querySelectorAll('#controls input[type=range]')) {
      const value = v[input.dataset.path];
      if (typeof value === 'number' && document.activeElement !== input) input.value = String(value);
      // The readout is for eyes; screen readers hear the same text as the slider's value.
      const unit = input.dataset.unit;
      const text = Number(input.value).toFixed(input.step >= 1 ? 0 : 2) + (unit ? ` ${unit}` : '');
      const out = document.querySelector(`.readout[data-for="${input.dataset.path}"]`);
      if (out) out.textContent = text;
      input.setAttribute('aria-valuetext', text);
    }
  }

  /** A control moved (or a caller asks for a change): leaders send, everyone else is refused. */
  change(path, value) {
    const input = document.querySelector(`#controls input[data-path="${path}"]`);
    if (input && Number(input.value) !== value) input.value = String(value);
    if (POLARITY_PATHS.includes(path)) this.polarityDirty = true;
    else this.pending[path] = value;
    this.renderControls(this.currentControls());
    if (this.sendTimer === null) { // throttle: at most one send per SEND_INTERVAL, latest values win
      const wait = Math.max(0, SEND_INTERVAL - (performance.now() - this.lastSend));
      this.sendTimer = setTimeout(() => this.send(), wait);
    }
  }

  currentControls() {
    const out = {};
    for (const input of document.querySelectorAll('#controls input[type=range]')) out[input.dataset.path] = Number(input.value);
    return out;
  }

  polarityPayload() {
    const c = { ...DEFAULTS, ...this.session.values, ...this.currentControls() };
    const channel = (name, mode) => ({
      enabled: Boolean(c[`polarity.${name}.enabled`]), amplitude: c[`polarity.${name}.amplitude`],
      phase: c[`polarity.${name}.phase`], resonanceMode: mode,
    });
    return {
      lightChannel: channel('light', 'harmonic'), darkChannel: channel('dark', 'chaotic'),
      polarityBalance: c['polarity.balance'], darkEnergyDrift: { driftRate: 0.01, expansionFactor: 1.2 },
    };
  }

  /**
   * Send what changed, to take effect at network time now + D for everyone: state paths as a
   * state update stamped now, polarity as a polarity_sync control at now + D (and the same paths
   * in the state document, so that later joiners start from it).
   */
  send() {
    this.sendTimer = null;
    this.lastSend = performance.now();
    const s = this.session;
    const now = this.client.networkTime();
    const due = now + s.playout.buffer.delay;
    const changes = this.pending;
    this.pending = {};
    if (this.polarityDirty) {
      this.polarityDirty = false;
      const payload = this.polarityPayload();
      s.polaritySync(payload, due).catch((err) => this.showError(err.code, describe(err)));
      Object.assign(changes, polarityChanges(payload));
    }
    if (!Object.keys(changes).length) return;
    const sent = leaderChange(this.mirror, changes, due);
    this.mirror.apply(sent, due);
    try {
      s.set(sent, now);
    } catch (err) {
      this.showError('not_connected', describe(err));
    }
  }

  /** A change is released (its instant is up to D away): to the audio thread, and to the UI at its instant. */
  onApply({ kind, due, msg }) {
    let changes = null;
    if (kind === 'state') changes = msg.set;
    else if (msg.event === 'polarity_sync') changes = polarityChanges(msg.payload);
    if (!changes) return;
    this.player?.apply(changes, due, kind === 'state' ? 0 : 1);
    this.visual.apply(changes, due);
    const s = this.session;
    if (!s.isLeader) {
      setTimeout(() => { // at `due`: the sliders move, and a follower sees which ones the leader moves
        this.renderControls(s.applied);
        this.highlight(Object.keys(changes));
      }, s.playout.lead * 1000);
    }
  }

  /** Mark the controls of `paths` as being moved (by the leader) for a moment. */
  highlight(paths) {
    for (const path of paths) {
      const field = document.querySelector(`#controls input[data-path="${path}"]`)?.closest('.field');
      if (!field) continue;
      field.classList.add('moving');
      clearTimeout(this.moving.get(path));
      this.moving.set(path, setTimeout(() => field.classList.remove('moving'), MOVING_MS));
    }
  }

  async toggleAudio() {
    const btn = $('audio-btn');
    if (this.player?.running) {
      if (this.rtc?.live.includes('engine')) await this.rtc.unpublish('engine').catch(() => {});
      await this.player.stop();
      this.player = null;
      btn.textContent = '▶ Tap to hear';
      $('tap-note').hidden = false;
      this.tellAudio();
      return;
    }
    this.player = new GaaPlayer(this.client, { perfToLocal: this.sim.perfToLocal });
    this.duck = null;
    try {
      await this.player.start(this.session.applied);
      btn.textContent = '■ Stop sound';
      $('tap-note').hidden = true;
      this.applyVolume();
      this.tellAudio();
    } catch (err) {
      this.player = null;
      this.showError('audio', `Audio could not start: ${describe(err)}`);
    }
  }

  /** The listener's own volume and mute, and the duck while another engine is streamed. */
  applyVolume() {
    if (!this.player?.running) return;
    const gain = (this.duck ?? 1) * (this.muted ? 0 : this.volume);
    this.player.master.gain.setTargetAtTime(gain, this.player.ctx.currentTime, 0.02);
  }

  /** Tell the session whether this person hears it (`audio` in its meta: 'on', 'muted', 'off'),
   *  for the marks in everyone's roster. */
  tellAudio() {
    const s = this.session;
    if (!s || !this.live) return;
    const audio = !this.player?.running ? 'off' : this.muted ? 'muted' : 'on';
    const meta = s.participants.get(s.me)?.meta ?? {};
    if (meta.audio === audio) return;
    s.updateMeta({ ...meta, audio }).catch(() => {}); // a mark only: a refusal changes nothing here
  }

  tick() {
    const c = this.client;
    const s = this.session;
    if (s && this.player?.mapped) {
      // Hand changes to the audio thread as early as possible: the worklet holds each until its
      // instant, so the only deadline left is that the change reaches this page before the audio
      // thread renders its instant (output latency plus buffering ahead of the speakers); a busy
      // main thread (timers firing tens of ms late on a loaded machine) no longer makes it late.
      s.playout.lead = s.playout.buffer.delay;
      // Someone else's engine is streamed: it is this session's engine, played D later than the
      // local render; hearing both would be an echo, so the local engine steps aside meanwhile.
      const streamed = Boolean(this.rtc?.listening) && !this.streamMuted
        && (s.media ?? []).some((m) => m.slot === 'engine' && m.publisher !== s.me);
      const gain = streamed ? 0 : 1;
      if (gain !== this.duck) {
        this.duck = gain;
        this.applyVolume();
      }
    }
    const late = s ? s.playout.buffer.stats.lateApplied + s.playout.buffer.stats.lateDropped + (this.player?.late ?? 0) : 0;
    const online = c.state === 'open';
    this.panel.render({ delay: s?.playout.buffer.delay, late, online });
    const lock = $('lock');
    lock.textContent = !online ? 'offline' : c.network.locked ? 'in sync' : 'syncing';
    lock.className = `badge ${online && c.network.locked ? 'ok' : 'warn'}`;
    if (this.sim.offset || this.sim.skew || this.sim.scripted) {
      $('sim-note').textContent = `This page runs on a simulated local clock (${this.sim.offset >= 0 ? '+' : ''}${this.sim.offset} s, ${(this.sim.skew * 1e6).toFixed(0)} ppm).`;
    }
  }

  meter() {
    const db = this.player?.levelDb() ?? -Infinity;
    $('meter-fill').style.width = `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
    const audible = Number.isFinite(db) && db > -100;
    $('meter-db').textContent = audible ? `${db.toFixed(1)} dB` : '–∞ dB';
    // The accessible value changes with whole dB only (not 60 times a second).
    const spoken = audible ? `${db.toFixed(0)} dB` : 'silent';
    const meter = $('meter');
    if (meter.getAttribute('aria-valuetext') !== spoken) {
      meter.setAttribute('aria-valuenow', String(Math.max(-60, Math.min(0, audible ? Math.round(db) : -60))));
      meter.setAttribute('aria-valuetext', spoken);
    }
    requestAnimationFrame(() => this.meter());
  }

  showError(code, message) {
    const text = ERROR_TEXT[code] ?? message ?? code;
    this.errors.push({ code, text });
    if (this.errors.length > 100) this.errors.shift();
    const recent = [...document.querySelectorAll('.toast.error')].some((el) => el.textContent === text);
    if (!recent) toast(text, 'error'); // one refused drag gives one message, not one per send
    if (code === 'not_leader' && this.session) this.renderControls(this.session.applied); // snap back
  }

  setConn(state, text) {
    $('conn').dataset.state = state;
    $('conn-text').textContent = text;
  }

  banner(text) {
    $('banner').hidden = !text;
    $('banner').textContent = text ?? '';
  }
}

const app = new App();
window.demo = app; // for the console, and for tests
app.meter();
app.boot();

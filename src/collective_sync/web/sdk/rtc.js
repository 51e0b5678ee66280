// The SFU link of a joined session: one RTCPeerConnection to the server, carrying both media
// slots and the state data channel (docs/protocol.md, "Media and data channels").
//
//   import { RtcLink } from '/sdk/rtc.js';
//   const link = new RtcLink(session);
//   await link.open();                        // ServerError 'rtc_unavailable': stay on the WebSocket
//   await link.publishMic();                  // leader/facilitator: voice from the microphone
//   await link.publishNode('engine', ctx, engineOutputNode);
//   link.setVolume(0.5); link.setMuted(true, 'voice');
//
// Why the browser does not simply play the remote tracks: WebRTC's own jitter buffer plays each
// stream as soon as it can, so two listeners hear it tens of ms apart (their paths and buffers
// differ). Here every listener plays the sample with RTP timestamp T at the same network instant,
// `at + delta32(T − rtpTs)/rate + D` (the slot's clock map from `media`, the session's playout
// delay D):
//   1. receive: each receiver gets an RTCRtpScriptTransform running rtc-worker.js, which reads
//      every encoded Opus frame's RTP timestamp and decodes it with WebCodecs; nothing reaches the
//      native decoder (no <audio> element either, so the native track is never heard);
//   2. the PCM goes with its timestamp over a MessagePort straight to stream-worklet.js;
//   3. the worklet computes, for every output sample, the network time it will be heard (from
//      this page's output timestamps and disciplined network clock, as the GAA engine does) and
//      the stream position due then, and plays it. Late frames are dropped and counted.
// The offer is built before ICE and sent once gathering is complete (no trickle); the server's
// answer carries all its candidates. The answer's Opus parameters are rewritten for music (sdp.js).
// The data channel "state" (unordered, no retransmission) feeds the session like the WebSocket.
//
// What "the same instant" means here: the server's `at` for a timestamp is when that packet
// reached it (the lower envelope of arrivals, so queueing is left out), and Opus output lags its
// input by the encoder's look-ahead (6.5 ms); both are the same for every listener, so they
// shift the stream as a whole and leave listeners together. D must cover the path from the
// server to the slowest listener's audio thread (decoding included): what comes later is dropped.
//
// Events (CustomEvent detail): `listening` {listening}, `media` {slots} (the session's live
// streams), `live` {slots} (what this page publishes), `unavailable` {code, message}.

import { backoffDelay } from './backoff.js';
import { ServerError } from './client.js';
import { withOpusParams } from './sdp.js';
import { StreamPlayer } from './stream-player.js';

export const SLOTS = ['voice', 'engine']; // the offer's audio m-lines, in this order
const GATHER_TIMEOUT = 5000; // ms to wait for ICE gathering before sending what there is
const GIVE_UP = new Set(['rtc_unavailable', 'not_in_session', 'invalid_message']);

/** Whether this browser can do the synchronised path (else: WebSocket only). */
export function rtcSupported() {
  return typeof RTCPeerConnection !== 'undefined' && typeof AudioDecoder !== 'undefined'
    && typeof Worker !== 'undefined' && typeof AudioWorkletNode !== 'undefined'
    && (typeof RTCRtpScriptTransform !== 'undefined' || 'createEncodedStreams' in RTCRtpReceiver.prototype);
}

function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener('icegatheringstatechange', check); resolve(); };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener('icegatheringstatechange', check);
  });
}

export class RtcLink extends EventTarget {
  /**
   * @param {import('./client.js').Session} session a joined session
   * @param {{perfToLocal?: (ms: number) => number, workerUrl?: string, player?: StreamPlayer}} [options]
   */
  constructor(session, { perfToLocal, workerUrl = '/sdk/rtc-worker.js', player } = {}) {
    super();
    this.session = session;
    this.client = session.client;
    this.workerUrl = workerUrl;
    this.player = player ?? new StreamPlayer(this.client, { slots: SLOTS, perfToLocal, delay: () => session.playout.buffer.delay });
    this.pc = null;
    this.transceivers = [];
    this.channel = null;
    this.worker = null;
    this.tracks = new Map(); // slot -> the track this page publishes on it
    this.owned = new Set(); // tracks this link made (stopped when unpublished)
    this.listening = false;
    this.channelMessages = 0; // state messages that came over the data channel
    this.closed = false;
    this.unavailable = null; // the server's refusal: stay on the WebSocket
    this.attempt = 0;
    this.retryTimer = null;
    this.negotiating = null;
    this.onMedia = () => this.applyMedia();
    this.onResumed = (ev) => { if (ev.detail.session === session.id) this.afterResume(ev.detail); };
    this.onEnded = () => this.close();
  }

  /** Open the peer connection (resolves once the answer is applied); a refusal rejects with a ServerError. */
  async open() {
    if (!rtcSupported()) throw new ServerError('rtc_unavailable', 'this browser lacks WebRTC insertable streams or WebCodecs');
    this.worker = new Worker(this.workerUrl, { type: 'module' });
    this.worker.onmessage = ({ data }) => this.workerReplies?.get(data.id)?.(data);
    this.session.addEventListener('media', this.onMedia);
    this.session.addEventListener('ended', this.onEnded);
    this.client.addEventListener('resumed', this.onResumed);
    this.applyMedia();
    await this.negotiate();
  }

  /** The session's live streams (MediaSlot list). */
  get media() { return this.session.media ?? []; }

  /** Slots this page is live on. */
  get live() { return [...this.tracks.keys()]; }

  applyMedia() {
    const heard = this.media.filter((m) => m.publisher !== this.session.me);
    if (heard.length && !this.playerReady) {
      this.startPlayer().then(() => this.applyMedia(), () => {}); // maps once it runs
    } else if (this.player.node) {
      for (const slot of SLOTS) this.player.setMedia(slot, heard.find((m) => m.slot === slot) ?? null);
    }
    this.dispatchEvent(new CustomEvent('media', { detail: { slots: this.media } }));
  }

  /**
   * The audio side starts with the first stream from someone else (no AudioContext before: a
   * session without streams costs nothing); until then the worker has no sink and decodes nothing.
   */
  startPlayer() {
    this.playerReady ??= (async () => {
      await this.player.start();
      const { port1, port2 } = new MessageChannel();
      this.worker.postMessage({ type: 'sink', port: port1 }, [port1]);
      this.player.connectSource(port2);
    })();
    return this.playerReady;
  }

  /** A fresh peer connection (a new offer replaces the old one on the server too). */
  negotiate() {
    this.negotiating ??= this.negotiateOnce().finally(() => { this.negotiating = null; });
    return this.negotiating;
  }

  async negotiateOnce() {
    this.dropPc();
    const legacy = typeof RTCRtpScriptTransform === 'undefined'; // createEncodedStreams (older Chromium)
    const pc = new RTCPeerConnection({ iceServers: [], ...(legacy ? { encodedInsertableStreams: true } : {}) });
    this.pc = pc;
    this.transceivers = SLOTS.map(() => pc.addTransceiver('audio', { direction: 'sendrecv' }));
    this.transceivers.forEach((t, slot) => this.receive(t, slot, legacy));
    const channel = pc.createDataChannel('state', { ordered: false, maxRetransmits: 0 });
    channel.onmessage = (ev) => {
      this.channelMessages++;
      this.client.receiveChannel(this.session.id, ev.data, this.client.clock());
    };
    this.channel = channel;
    pc.onconnectionstatechange = () => this.onPcState(pc);
    for (const [slot, track] of this.tracks) await this.transceivers[SLOTS.indexOf(slot)].sender.replaceTrack(track);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, GATHER_TIMEOUT);
    if (this.pc !== pc) return;
    let reply;
    try {
      reply = await this.client.request({ type: 'rtc_offer', session: this.session.id, sdp: pc.localDescription.sdp });
    } catch (err) {
      if (err instanceof ServerError && GIVE_UP.has(err.code)) this.giveUp(err);
      throw err;
    }
    if (this.pc !== pc) return;
    this.answered = true; // the server has a peer for us (close() tells it to let go)
    await pc.setRemoteDescription({ type: 'answer', sdp: withOpusParams(reply.sdp) });
    // Slots this page was live on before (a renegotiation): the server forgot the peer, say it again.
    for (const slot of this.tracks.keys()) await this.announce(slot, true).catch(() => {});
  }

  /** Route a receiver's encoded frames to the worker instead of the browser's decoder. */
  receive(transceiver, slot, legacy) {
    if (!legacy) {
      transceiver.receiver.transform = new RTCRtpScriptTransform(this.worker, { slot });
      return;
    }
    const { readable } = transceiver.receiver.createEncodedStreams();
    this.worker.postMessage({ type: 'stream', slot, readable }, [readable]);
    const out = transceiver.sender.createEncodedStreams(); // with the legacy flag, senders must be piped
    out.readable.pipeTo(out.writable).catch(() => {});
  }

  onPcState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    const listening = state === 'connected';
    if (listening !== this.listening) {
      this.listening = listening;
      if (listening) this.attempt = 0;
      this.dispatchEvent(new CustomEvent('listening', { detail: { listening } }));
    }
    if (state === 'failed') this.retrySoon();
  }

  /** Negotiate again after a backoff, if the WebSocket is up (else the `resumed` event does). */
  retrySoon() {
    if (this.closed || this.unavailable || this.retryTimer) return;
    const delay = backoffDelay(this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.client.connected && this.session.connected) this.negotiate().catch(() => this.retrySoon());
    }, delay * 1000);
  }

  /** The WebSocket came back: a server that no longer has our peer (restart, crash) needs a new offer. */
  afterResume({ epochChanged }) {
    if (this.closed || this.unavailable) return;
    const me = this.session.participants.get(this.session.me);
    const state = this.pc?.connectionState;
    if (epochChanged || !me?.listening || state === 'failed' || state === 'closed') {
      this.negotiate().catch(() => this.retrySoon());
    }
  }

  giveUp(err) {
    this.unavailable = err;
    this.dispatchEvent(new CustomEvent('unavailable', { detail: { code: err.code, message: err.message } }));
  }

  /** Go live on `slot` with `track` (the leader or a facilitator); ServerError if refused. */
  async publish(slot, track) {
    const i = SLOTS.indexOf(slot);
    if (i < 0) throw new Error(`unknown slot ${slot}`);
    if (this.negotiating) await this.negotiating;
    if (!this.pc || this.closed) throw new ServerError('rtc_unavailable', 'no peer connection to the server');
    await this.transceivers[i].sender.replaceTrack(track);
    const previous = this.tracks.get(slot);
    this.tracks.set(slot, track);
    try {
      await this.announce(slot, true);
    } catch (err) {
      this.tracks.delete(slot);
      await this.transceivers[i]?.sender.replaceTrack(null);
      this.release(track);
      throw err;
    }
    if (previous && previous !== track) this.release(previous);
    this.dispatchEvent(new CustomEvent('live', { detail: { slots: this.live } }));
  }

  /** Voice from the microphone (the browser's voice processing stays on unless `constraints` say otherwise). */
  async publishMic(constraints = true) {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: constraints });
    const track = stream.getAudioTracks()[0];
    this.owned.add(track);
    await this.publish('voice', track);
  }

  /** Publish what `node` (an AudioNode of `ctx`) outputs, in stereo and unprocessed: the engine. */
  async publishNode(slot, ctx, node) {
    const dest = new MediaStreamAudioDestinationNode(ctx, { channelCount: 2 });
    node.connect(dest);
    const track = dest.stream.getAudioTracks()[0];
    this.owned.add(track);
    this.sources ??= new Map();
    this.sources.set(track, () => node.disconnect(dest));
    await this.publish(slot, track);
  }

  async unpublish(slot) {
    const track = this.tracks.get(slot);
    if (!track) return;
    this.tracks.delete(slot);
    await this.transceivers[SLOTS.indexOf(slot)]?.sender.replaceTrack(null);
    this.release(track);
    this.dispatchEvent(new CustomEvent('live', { detail: { slots: this.live } }));
    if (this.client.connected) await this.announce(slot, false).catch(() => {});
  }

  announce(slot, live) {
    return this.client.request({ type: 'rtc_publish', session: this.session.id, slot, live });
  }

  release(track) {
    if (!this.owned.delete(track)) return;
    track.stop();
    this.sources?.get(track)?.();
    this.sources?.delete(track);
  }

  /** Listener volume (0…1) and mute, of one slot or (slot null) of every stream. */
  setVolume(volume, slot = null) { this.player.setVolume(volume, slot); }
  setMuted(muted, slot = null) { this.player.setMuted(muted, slot); }

  /** Counters: the worklet's per slot (received, late, played, gaps, …) and the worker's (frames, decoded, errors, …). */
  async stats() {
    const id = Math.random();
    this.workerReplies ??= new Map();
    const worker = new Promise((resolve) => this.workerReplies.set(id, (d) => { this.workerReplies.delete(id); resolve(d.slots); }));
    this.worker.postMessage({ type: 'stats', id });
    const [player, decode] = await Promise.all([this.player.node ? this.player.stats() : {}, worker]);
    return Object.fromEntries(SLOTS.map((s, i) => [s, { ...player[s], ...(decode[i] ?? {}) }]));
  }

  dropPc() {
    const pc = this.pc;
    if (!pc) return;
    this.pc = null;
    pc.onconnectionstatechange = null;
    if (this.channel) this.channel.onmessage = null;
    this.channel = null;
    pc.close();
    if (this.listening) {
      this.listening = false;
      this.dispatchEvent(new CustomEvent('listening', { detail: { listening: false } }));
    }
  }

  /** Stop publishing and listening; the server closes its side (`rtc_close`). */
  async close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.session.removeEventListener('media', this.onMedia);
    this.session.removeEventListener('ended', this.onEnded);
    this.client.removeEventListener('resumed', this.onResumed);
    const live = this.live;
    for (const track of this.tracks.values()) this.release(track);
    this.tracks.clear();
    if (this.answered && this.client.connected && this.session.connected) {
      for (const slot of live) this.client.send({ type: 'rtc_publish', session: this.session.id, slot, live: false });
      this.client.send({ type: 'rtc_close', session: this.session.id });
    }
    this.dropPc();
    this.worker?.terminate();
    await this.player.stop();
  }
}

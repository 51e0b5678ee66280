// Plays the SFU's streams on this page, at network time (main-thread side of stream-worklet.js).
//
// Its own AudioContext at 48 kHz (the streams' rate), one worklet node with one stereo output
// per slot, a GainNode per slot (listener volume and mute) and a master gain. Every 50 ms it
// takes an output timestamp and tells the worklet how context time maps to network time, with
// the same fit and the same disciplined clock as the GAA player (audio-clock.js: networkMap), so
// a stream and the engine land on the same instants.
import { AudioClock, networkMap } from './audio-clock.js';
import { clockMap } from './rtp-time.js';

const CLOCK_PERIOD_MS = 50;
const FIT_PAIRS = 200; // 10 s of output timestamps (headless and loaded machines jitter by ms)
const MIN_SPAN = 2; // s of output timestamps before their slope is trusted (after a start or a re-acquisition)
const GESTURES = ['pointerdown', 'keydown', 'touchend'];

export class StreamPlayer {
  /**
   * @param {{network: {toNetwork: (l: number) => number}, addEventListener: Function}} client
   * @param {{slots?: string[], delay?: () => number, perfToLocal?: (ms: number) => number,
   *          workletUrl?: string}} [options] `delay` gives the session's playout delay D now
   */
  constructor(client, { slots = ['voice', 'engine'], delay = () => 0.15, perfToLocal, workletUrl = '/sdk/stream-worklet.js' } = {}) {
    this.client = client;
    this.slots = slots;
    this.delay = delay;
    this.perfToLocal = perfToLocal;
    this.workletUrl = workletUrl;
    this.ctx = null;
    this.node = null;
    this.gains = new Map(); // slot -> GainNode
    this.levels = new Map(slots.map((s) => [s, { volume: 1, muted: false }]));
    this.master = null;
    this.timer = null;
    this.requests = new Map();
    this.rid = 0;
  }

  async start() {
    const ctx = new AudioContext({ latencyHint: 'interactive', sampleRate: 48000 });
    this.ctx = ctx;
    await ctx.audioWorklet.addModule(this.workletUrl);
    this.node = new AudioWorkletNode(ctx, 'stream-player', {
      numberOfInputs: 0, numberOfOutputs: this.slots.length, outputChannelCount: this.slots.map(() => 2),
    });
    this.node.port.onmessage = ({ data }) => this.requests.get(data.id)?.(data);
    this.master = new GainNode(ctx, { gain: 1 });
    this.master.connect(ctx.destination);
    this.slots.forEach((slot, i) => {
      const gain = new GainNode(ctx, { gain: this.gainOf(slot) });
      this.node.connect(gain, i).connect(this.master);
      this.gains.set(slot, gain);
    });
    this.audioClock = new AudioClock(ctx, this.client, this.perfToLocal);
    this.audioClock.fit.size = FIT_PAIRS;
    this.timer = setInterval(() => this.syncClock(), CLOCK_PERIOD_MS);
    // Autoplay policy: a context made without a user gesture starts suspended; the next one resumes it.
    this.resumeOnGesture = () => ctx.resume();
    for (const ev of GESTURES) document.addEventListener(ev, this.resumeOnGesture, { capture: true });
    ctx.resume().catch(() => {});
  }

  get running() { return this.ctx?.state === 'running'; }

  /** A MessagePort the decoding worker writes PCM to (rtc-worker.js). */
  connectSource(port) { this.node.port.postMessage({ type: 'source', port }, [port]); }

  /** A slot's MediaSlot (from `joined.media` / `media`), or null when it is not live. */
  setMedia(slot, media) {
    const i = this.slots.indexOf(slot);
    if (i >= 0) this.node?.port.postMessage({ type: 'map', slot: i, map: clockMap(media) });
  }

  /** Listener volume (0…1) of one slot, or of all streams with slot null. */
  setVolume(volume, slot = null) {
    for (const s of slot ? [slot] : this.slots) this.levels.get(s).volume = Math.max(0, Math.min(1, volume));
    this.applyGains();
  }

  setMuted(muted, slot = null) {
    for (const s of slot ? [slot] : this.slots) this.levels.get(s).muted = Boolean(muted);
    this.applyGains();
  }

  gainOf(slot) {
    const l = this.levels.get(slot);
    return l.muted ? 0 : l.volume;
  }

  applyGains() {
    if (!this.ctx) return;
    for (const [slot, gain] of this.gains) gain.gain.setTargetAtTime(this.gainOf(slot), this.ctx.currentTime, 0.015);
  }

  /** Counters of the worklet per slot: {received, late, played, gaps, dropped, queued}. */
  stats() {
    const id = ++this.rid;
    return new Promise((resolve) => {
      this.requests.set(id, (data) => { this.requests.delete(id); resolve(Object.fromEntries(this.slots.map((s, i) => [s, data.slots[i]]))); });
      this.node.port.postMessage({ type: 'stats', id });
    });
  }

  /** Take an output timestamp; tell the worklet the context -> network map and D. */
  syncClock() {
    this.audioClock.sample();
    const fit = this.audioClock.fit;
    if (fit.pairs.length < 2) return;
    this.clock = networkMap(fit, this.client.network, this.ctx.currentTime, MIN_SPAN);
    this.node.port.postMessage({ type: 'clock', ...this.clock, delay: this.delay() });
  }

  async stop() {
    if (!this.ctx) return;
    clearInterval(this.timer);
    for (const ev of GESTURES) document.removeEventListener(ev, this.resumeOnGesture, { capture: true });
    await this.ctx?.close();
    this.ctx = null;
  }
}

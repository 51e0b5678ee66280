// Plays the GAA engine for one participant, in step with everyone else.
//
// The engine runs in an AudioWorklet (worklet.js) and evaluates every sample at the network time
// at which it will be heard. The main thread only keeps that mapping current: AudioClock fits a
// line through getOutputTimestamp() pairs (context time of the sample leaving the speakers vs the
// page's local clock), and the client's disciplined clock maps local time to network time. Changes
// are posted ahead of time with their network instant and take effect on the exact sample: no
// timers decide when a change is heard.

import { AudioClock, networkMap } from '../sdk/audio-clock.js';
import { RAMP } from './engine.js';

const CLOCK_PERIOD_MS = 50; // how often an output timestamp is taken and the map refreshed
const FIT_PAIRS = 200; // 10 s of output timestamps: headless and loaded machines jitter by ms
const MAX_JUMPS = 200; // map refreshes remembered (10 s)

export class GaaPlayer {
  /**
   * @param {{network: {toNetwork: (l: number) => number, toLocal: (t: number) => number},
   *          networkTime: () => number}} client the SDK client (its disciplined network clock)
   * @param {{perfToLocal?: (ms: number) => number, workletUrl?: string}} [options]
   *   `perfToLocal` maps a performance.now() reading onto the client's local clock; give it when
   *   the client runs on an injected clock
   */
  constructor(client, { perfToLocal, workletUrl = '/gaa/worklet.js' } = {}) {
    this.client = client;
    this.perfToLocal = perfToLocal;
    this.workletUrl = workletUrl;
    this.ctx = null;
    this.node = null;
    this.analyser = null;
    this.mapped = false;
    this.late = 0; // changes that reached the audio thread after their instant
    this.lastLate = null;
    // How far each map refresh moved the time being played (s, at the refresh): a jittery output
    // clock or a correcting network clock shows here, as a phase jump in every oscillator.
    this.jumps = [];
    this.timer = null;
    this.meterBuffer = null;
  }

  get running() { return this.ctx?.state === 'running'; }

  /** Start audio (call from a user gesture: autoplay policy) with the state as applied now. */
  async start(values = {}) {
    const ctx = new AudioContext({ latencyHint: 'interactive' });
    this.ctx = ctx;
    await ctx.audioWorklet.addModule(this.workletUrl);
    this.node = new AudioWorkletNode(ctx, 'gaa-engine', { numberOfOutputs: 1, outputChannelCount: [2] });
    this.master = new GainNode(ctx, { gain: 0 }); // silent until the clock map is known
    this.analyser = new AnalyserNode(ctx, { fftSize: 2048 });
    this.node.connect(this.master).connect(this.analyser).connect(ctx.destination);
    this.audioClock = new AudioClock(ctx, this.client, this.perfToLocal);
    this.audioClock.fit.size = FIT_PAIRS;
    this.timer = setInterval(() => this.syncClock(), CLOCK_PERIOD_MS);
    this.node.port.postMessage({ type: 'apply', changes: values, at: this.client.networkTime() - RAMP });
    await ctx.resume();
  }

  async stop() {
    clearInterval(this.timer);
    await this.ctx?.close();
    this.ctx = null;
    this.mapped = false;
  }

  /** Take an output timestamp, then tell the worklet how context time maps to network time. */
  syncClock() {
    this.audioClock.sample();
    const fit = this.audioClock.fit;
    if (fit.pairs.length < 2) return;
    const ctxTime = this.ctx.currentTime;
    const { net, rate } = networkMap(fit, this.client.network, ctxTime);
    if (this.clock) {
      const before = this.clock.net + (ctxTime - this.clock.ctx) * this.clock.rate;
      this.jumps.push([ctxTime, net - before]);
      if (this.jumps.length > MAX_JUMPS) this.jumps.shift();
    }
    this.clock = { ctx: ctxTime, net, rate };
    this.node.port.postMessage({ type: 'clock', ...this.clock });
    if (!this.mapped) {
      this.mapped = true;
      this.master.gain.setTargetAtTime(1, ctxTime, 0.05);
    }
  }

  /**
   * How far ahead of the speakers the audio thread renders, in seconds (output latency plus
   * buffering; it grows when the machine is loaded). Changes must reach the worklet earlier
   * than that.
   */
  renderAhead() {
    if (!this.mapped) return null;
    return this.ctx.currentTime - this.audioClock.contextTimeAtLocal(this.client.clock());
  }

  /** Network time of the next sample the audio thread renders (null before the map is known). */
  renderingNetworkTime() {
    if (!this.clock) return null;
    const quantum = 128 / this.ctx.sampleRate;
    return this.clock.net + (this.ctx.currentTime + quantum - this.clock.ctx) * this.clock.rate;
  }

  /**
   * Apply engine paths at network time `at` (`rank` orders changes due at the same instant:
   * 0 state, 1 control). Hand it over any time before: the worklet holds it until its instant.
   * A change that comes after the audio thread has rendered its instant starts on the next
   * sample instead (ramped: late, never a click), and is counted.
   */
  apply(changes, at, rank = 0) {
    if (!this.node) return;
    const earliest = this.renderingNetworkTime();
    if (earliest !== null && at < earliest) {
      this.late++;
      this.lastLate = { at, earliest, changes };
      at = earliest;
    }
    this.node.port.postMessage({ type: 'apply', changes, at, rank });
  }

  /** Output level now, in dBFS (RMS over the analyser's window). */
  levelDb() {
    if (!this.analyser) return -Infinity;
    this.meterBuffer ??= new Float32Array(this.analyser.fftSize);
    this.analyser.getFloatTimeDomainData(this.meterBuffer);
    let sum = 0;
    for (const x of this.meterBuffer) sum += x * x;
    return 10 * Math.log10(sum / this.meterBuffer.length + 1e-12);
  }
}

// AudioWorklet processor playing the SFU's streams at network time (the path is described in
// rtc.js). Like the GAA worklet, it evaluates every output sample at the network time at which
// it will be heard: the main thread keeps {ctx, net, rate} current (network = net + (contextTime
// − ctx) · rate) and sends each slot's clock map and the playout delay D; decoded PCM comes
// straight from the decoding worker over a MessagePort (no main-thread hop, so a busy page does
// not make audio late). For each sample the stream position is positionAt(map, t, D), read from
// the queued chunks with cubic interpolation: that absorbs the 48 kHz stream against any context
// rate, the publisher's clock drift the map carries, and the slewing network clock, without
// clicks between chunks. A chunk that arrives after its last sample was due is dropped and
// counted (`late`); a hole in a stream being played is counted too (`gaps`, in render quanta).
import { SlotPlayer } from './stream-buffer.js';

class StreamPlayerProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const count = options.numberOfOutputs ?? 2;
    this.slots = Array.from({ length: count }, () => new SlotPlayer());
    this.clock = null; // {ctx, net, rate}
    this.delay = 0.15;
    this.port.onmessage = ({ data }) => this.onMessage(data);
  }

  onMessage(data) {
    if (data.type === 'clock') {
      this.clock = { ctx: data.ctx, net: data.net, rate: data.rate };
      this.delay = data.delay;
    } else if (data.type === 'map') this.slots[data.slot]?.setMap(data.map);
    else if (data.type === 'source') {
      data.port.onmessage = ({ data: m }) => { if (m.type === 'pcm') this.slots[m.slot]?.push(m.ts, m.ch); };
    } else if (data.type === 'stats') {
      this.port.postMessage({ type: 'stats', id: data.id, slots: this.slots.map((s) => ({ ...s.stats, queued: s.queued })) });
    }
  }

  process(_inputs, outputs) {
    const clock = this.clock;
    if (!clock) return true;
    const t0 = clock.net + (currentFrame / sampleRate - clock.ctx) * clock.rate;
    const dt = clock.rate / sampleRate;
    for (let s = 0; s < this.slots.length; s++) if (outputs[s]) this.slots[s].render(outputs[s], t0, dt, this.delay);
    return true;
  }
}

registerProcessor('stream-player', StreamPlayerProcessor);

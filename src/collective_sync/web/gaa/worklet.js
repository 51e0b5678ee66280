// AudioWorklet processor running the GAA engine at network time.
// The main thread tells it how context time maps to network time ({type: 'clock', ctx, net,
// rate}) and sends state changes with their network instants ({type: 'apply', changes, at,
// rank}); every sample is the engine evaluated at the network time it will be heard. Changes may
// arrive any time before their instant: they wait in a queue (in instant order, state before
// control on a tie) and are applied on the first sample at or after their instant, so a change
// handed over early never cuts short a ramp still running before it.
import { Engine } from './engine.js';
import { ChangeQueue } from './timeline.js';

class GaaProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions ?? {};
    this.engine = new Engine();
    this.clock = opts.clock ?? { ctx: 0, net: 0, rate: 1 }; // network = net + (ctxTime - ctx) * rate
    // The state to start from (the steps as the reference engine applies them, all at once).
    for (const step of opts.timeline ?? []) this.engine.apply(step.changes, step.at);
    this.queue = new ChangeQueue();
    this.port.onmessage = ({ data }) => {
      if (data.type === 'apply') this.queue.push(data.changes, data.at, data.rank);
      else if (data.type === 'clock') this.clock = data;
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const frames = out[0].length;
    const { ctx, net, rate } = this.clock;
    for (let i = 0; i < frames; i++) {
      const t = net + ((currentFrame + i) / sampleRate - ctx) * rate;
      for (let step = this.queue.popDue(t); step; step = this.queue.popDue(t)) {
        this.engine.apply(step.changes, step.at);
      }
      const v = this.engine.sample(t);
      for (const channel of out) channel[i] = v;
    }
    return true;
  }
}

registerProcessor('gaa-engine', GaaProcessor);

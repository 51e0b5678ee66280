// AudioWorklet processor running the GAA engine at network time.
// The main thread tells it how context time maps to network time ({type: 'clock', ctx, net,
// rate}) and sends state changes with their network instants ({type: 'apply', changes, at});
// every sample is the engine evaluated at the network time it will be heard.
import { Engine } from './engine.js';

class GaaProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions ?? {};
    this.engine = new Engine();
    this.clock = opts.clock ?? { ctx: 0, net: 0, rate: 1 }; // network = net + (ctxTime - ctx) * rate
    for (const step of opts.timeline ?? []) this.engine.apply(step.changes, step.at);
    this.port.onmessage = ({ data }) => {
      if (data.type === 'apply') this.engine.apply(data.changes, data.at);
      else if (data.type === 'clock') this.clock = data;
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const frames = out[0].length;
    const { ctx, net, rate } = this.clock;
    for (let i = 0; i < frames; i++) {
      const t = net + ((currentFrame + i) / sampleRate - ctx) * rate;
      const v = this.engine.sample(t);
      for (const channel of out) channel[i] = v;
    }
    return true;
  }
}

registerProcessor('gaa-engine', GaaProcessor);

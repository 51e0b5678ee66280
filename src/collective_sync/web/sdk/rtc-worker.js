// Worker module: the receive side of the SFU link (see rtc.js). Each audio receiver's encoded
// Opus frames come here through an RTCRtpScriptTransform (or, in older Chromium, as the readable
// of createEncodedStreams); none is passed on to the browser's own decoder and jitter buffer, so
// the native track stays silent. Each frame's RTP timestamp is read from its metadata, the
// frame is decoded with WebCodecs (Opus, 48 kHz, stereo), and the PCM goes with its RTP
// timestamp straight to the stream worklet (a MessagePort), which plays it at network time.
import { TS_MOD, Unwrapper } from './rtp-time.js';

const RATE = 48000;
let sink = null; // MessagePort to the stream worklet
const slots = []; // per slot index: {run, unwrap, decoder, stats}

function slotState(slot) {
  slots[slot] ??= { run: 0, unwrap: new Unwrapper(), decoder: null, stats: { frames: 0, empty: 0, stale: 0, decoded: 0, errors: 0 } };
  return slots[slot];
}

function decoderFor(slot, st) {
  if (st.decoder && st.decoder.state === 'configured') return st.decoder;
  const decoder = new AudioDecoder({
    output: (data) => emit(slot, data),
    error: () => { st.stats.errors++; st.decoder = null; }, // the next frame starts a fresh decoder
  });
  decoder.configure({ codec: 'opus', sampleRate: RATE, numberOfChannels: 2 });
  st.decoder = decoder;
  return decoder;
}

/**
 * A new receiver for `slot` (a new peer connection): its frames replace the old run's. What the
 * worklet holds stays valid: a slot's timestamps are the server's, continuous across peers.
 */
function consume(slot, readable) {
  const st = slotState(slot);
  const run = ++st.run;
  st.unwrap = new Unwrapper();
  readable.pipeTo(new WritableStream({ write: (frame) => { if (st.run === run) onFrame(slot, st, frame); } })).catch(() => {});
}

function onFrame(slot, st, frame) {
  st.stats.frames++;
  const data = frame.data;
  if (!data.byteLength) { st.stats.empty++; return; } // padding-only packets (bandwidth probes)
  const ts = frame.getMetadata?.().rtpTimestamp ?? frame.timestamp;
  const ext = st.unwrap.next(ts);
  if (ext === null) { st.stats.stale++; return; } // duplicate or reordered: the decoder wants order
  if (!sink) return;
  // WebCodecs timestamps are µs and are echoed on the decoded AudioData: carry the extended RTP
  // timestamp in them (exact back to the tick: a tick is 20.8 µs).
  decoderFor(slot, st).decode(new EncodedAudioChunk({ type: 'key', timestamp: Math.round((ext * 1e6) / RATE), data }));
}

function emit(slot, data) {
  const st = slotState(slot);
  st.stats.decoded++;
  const ext = Math.round((data.timestamp * RATE) / 1e6);
  const n = data.numberOfFrames;
  const ch = [];
  for (let c = 0; c < 2; c++) {
    const plane = new Float32Array(n);
    data.copyTo(plane, { planeIndex: Math.min(c, data.numberOfChannels - 1), format: 'f32-planar' });
    ch.push(plane);
  }
  data.close();
  sink?.postMessage({ type: 'pcm', slot, ts: ext % TS_MOD, ch }, ch.map((p) => p.buffer));
}

self.onrtctransform = (event) => consume(event.transformer.options.slot, event.transformer.readable);

self.onmessage = ({ data }) => {
  if (data.type === 'sink') sink = data.port;
  else if (data.type === 'stream') consume(data.slot, data.readable);
  else if (data.type === 'stats') self.postMessage({ type: 'stats', id: data.id, slots: slots.map((s) => s?.stats ?? null) });
};

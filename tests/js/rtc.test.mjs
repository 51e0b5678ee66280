// The pure parts of the browser's SFU link: RTP time -> network time -> stream position, the
// stream buffer a worklet plays from, the per-path state version guard, and the SDP rewrite.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MUSIC_OPUS, mediaKinds, withOpusParams } from '../../src/collective_sync/web/sdk/sdp.js';
import { SlotPlayer, cubic } from '../../src/collective_sync/web/sdk/stream-buffer.js';
import { Unwrapper, clockMap, delta32, playoutTime, positionAt } from '../../src/collective_sync/web/sdk/rtp-time.js';
import { VersionGuard } from '../../src/collective_sync/web/sdk/versions.js';

test('delta32 is the signed 32-bit difference (the server\'s ts_delta)', () => {
  assert.equal(delta32(10, 5), 5);
  assert.equal(delta32(5, 10), -5);
  assert.equal(delta32(3, 2 ** 32 - 2), 5); // across the wrap
  assert.equal(delta32(2 ** 32 - 2, 3), -5);
  assert.equal(delta32(2 ** 31, 0), -(2 ** 31)); // Python: (a - b + 2^31) % 2^32 - 2^31
  assert.equal(delta32(2 ** 31 - 1, 0), 2 ** 31 - 1);
});

test('a sample plays at at + delta32(T - rtpTs)/rate + D, also across the wrap', () => {
  const map = clockMap({ slot: 'engine', publisher: 'p1', rtpTs: 2 ** 32 - 480, at: 1_700_000_000.25 });
  assert.equal(map.rate, 48000); // omitted when 48000
  const D = 0.15;
  // 960 ticks later, across the wrap: 20 ms after `at`, heard D after that.
  assert.ok(Math.abs(playoutTime(map, 480, D) - (1_700_000_000.25 + 0.02 + D)) < 1e-9);
  // Earlier samples have earlier instants.
  assert.ok(Math.abs(playoutTime(map, 2 ** 32 - 960, D) - (1_700_000_000.25 - 0.01 + D)) < 1e-9);
  // positionAt is its inverse.
  const t = playoutTime(map, 480, D);
  assert.ok(Math.abs(positionAt(map, t, D) - 960) < 1e-3);
  // A publisher's clock 50 ppm fast: the server's map says so, and the positions follow.
  const fast = clockMap({ rtpTs: 1000, at: 100, rate: 48002.4 });
  assert.ok(Math.abs(positionAt(fast, 110 + D, D) - 480024) < 1e-6);
  assert.equal(clockMap({ slot: 'voice', publisher: 'p1' }), null); // no packet reached the server yet
});

test('the unwrapper extends timestamps and refuses duplicates and reordered ones', () => {
  const u = new Unwrapper();
  assert.equal(u.next(2 ** 32 - 960), 2 ** 32 - 960);
  assert.equal(u.next(0), 2 ** 32); // wrapped
  assert.equal(u.next(0), null); // duplicate
  assert.equal(u.next(2 ** 32 - 960), null); // older
  assert.equal(u.next(960), 2 ** 32 + 960);
});

/** Feed a SlotPlayer 20 ms chunks of a ramp (sample value = its stream position / 1e6). */
function chunk(start, n = 960) {
  const ch = Float32Array.from({ length: n }, (_, i) => (start + i) / 1e6);
  return [ch, ch];
}

test('the stream buffer plays each sample at its network instant', () => {
  const rate = 48000;
  const map = { rtpTs: 1000, at: 50, rate };
  const D = 0.1;
  const player = new SlotPlayer();
  player.setMap(map);
  for (let k = 1; k < 5; k++) player.push(1000 + k * 960, chunk(k * 960));
  const out = [new Float32Array(128), new Float32Array(128)];
  // The block starts at the network instant of stream position 1000.25 (ticks after rtpTs).
  const t0 = playoutTime(map, 1000, D) + 1000.25 / rate;
  player.render(out, t0, 1 / rate, D);
  for (let i = 1; i < 127; i++) assert.ok(Math.abs(out[0][i] - (1000.25 + i) / 1e6) < 1e-9, `${i}: ${out[0][i]}`);
  assert.equal(player.stats.late, 0);
  assert.equal(player.stats.gaps, 0);
  // A chunk whose samples were all due before what was rendered is late: dropped and counted.
  player.push(1000, chunk(0));
  assert.equal(player.stats.late, 1);
  // Chunks wholly played are released.
  player.render(out, t0 + 2000 / rate, 1 / rate, D);
  assert.equal(player.queue[0].rel, 2880);
});

test('a hole in a stream being played counts as a gap; chunks may arrive out of order', () => {
  const map = { rtpTs: 0, at: 0, rate: 48000 };
  const player = new SlotPlayer();
  player.setMap(map);
  player.push(1920, chunk(1920));
  player.push(0, chunk(0)); // overtaken: still placed first
  assert.deepEqual(player.queue.map((c) => c.rel), [0, 1920]);
  const out = [new Float32Array(128), new Float32Array(128)];
  for (let t = 0; t < 3000; t += 128) player.render(out, t / 48000, 1 / 48000, 0);
  assert.ok(player.stats.gaps > 0); // 960..1920 never came
  assert.equal(player.stats.played, 2);
});

test('cubic interpolation passes through its samples and follows a line between them', () => {
  assert.equal(cubic(1, 2, 3, 4, 0), 2);
  assert.equal(cubic(1, 2, 3, 4, 1), 3);
  assert.ok(Math.abs(cubic(1, 2, 3, 4, 0.3) - 2.3) < 1e-12);
});

test('the version guard applies a path only from a newer v', () => {
  const g = new VersionGuard(10); // the joined snapshot is at v 10
  assert.equal(g.admit({ a: 1 }, 10), null); // already in the snapshot
  const set = { a: 1, b: 2 };
  assert.equal(g.admit(set, 11), set);
  assert.equal(g.admit({ a: 1, b: 2 }, 11), null); // the same message again (data channel + WebSocket)
  assert.deepEqual(g.admit({ a: 5, c: 3 }, 13), { a: 5, c: 3 });
  // An older message overtaken by a newer one: only its paths that are still older apply.
  assert.deepEqual(g.admit({ a: 4, b: 9 }, 12), { b: 9 });
  assert.deepEqual(g.admit({ a: null }, 14), { a: null }); // a deletion is a value too
});

test('the version guard forgets old paths by raising its floor', () => {
  const g = new VersionGuard(0, 4);
  for (let v = 1; v <= 5; v++) g.admit({ [`p${v}`]: v }, v);
  assert.ok(g.applied.size <= 4);
  assert.equal(g.admit({ p1: 0 }, 2), null); // at or below the floor: refused for every path
  assert.deepEqual(g.admit({ p9: 1 }, 6), { p9: 1 });
});

const ANSWER = [
  'v=0', 'o=- 1 1 IN IP4 0.0.0.0', 's=-', 't=0 0',
  'm=audio 9 UDP/TLS/RTP/SAVPF 96 0', 'a=mid:0', 'a=rtpmap:96 opus/48000/2', 'a=fmtp:96 minptime=10;useinbandfec=0;stereo=0',
  'a=rtpmap:0 PCMU/8000',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:1', 'a=rtpmap:111 opus/48000/2',
  'm=application 9 UDP/DTLS/SCTP webrtc-datachannel', 'a=mid:2', '',
].join('\r\n');

test('the answer\'s Opus fmtp is rewritten for music, other lines kept', () => {
  const sdp = withOpusParams(ANSWER);
  const lines = sdp.split('\r\n');
  assert.ok(lines.includes('a=fmtp:96 minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000;usedtx=0'));
  // A payload type without an fmtp line gets one after its rtpmap.
  const i = lines.indexOf('a=rtpmap:111 opus/48000/2');
  assert.equal(lines[i + 1], `a=fmtp:111 ${Object.entries(MUSIC_OPUS).map(([k, v]) => `${k}=${v}`).join(';')}`);
  assert.ok(!sdp.includes('a=fmtp:0'));
  assert.ok(sdp.endsWith('\r\n'));
  assert.deepEqual(mediaKinds(sdp), ['audio', 'audio', 'application']);
  assert.equal(withOpusParams(sdp), sdp); // idempotent
});

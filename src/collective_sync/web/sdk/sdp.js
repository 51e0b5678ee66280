// SDP edits for the SFU link (pure: tested with node --test).
//
// Chromium encodes what the remote description asks for: the Opus fmtp of the server's answer
// decides whether a publisher sends stereo, at what bitrate, with DTX and in-band FEC. The server
// (aiortc) answers with speech defaults, so the client rewrites them for music before applying.

export const MUSIC_OPUS = Object.freeze({
  stereo: '1', 'sprop-stereo': '1', maxaveragebitrate: '128000', usedtx: '0', useinbandfec: '1',
});

/** `sdp` with every Opus payload type's fmtp carrying `params` (added or replaced, others kept). */
export function withOpusParams(sdp, params = MUSIC_OPUS) {
  const eol = sdp.includes('\r\n') ? '\r\n' : '\n';
  const lines = sdp.split(eol);
  const opus = new Set();
  for (const line of lines) {
    const m = /^a=rtpmap:(\d+) opus\/48000/i.exec(line);
    if (m) opus.add(m[1]);
  }
  const out = [];
  for (const line of lines) {
    const fmtp = /^a=fmtp:(\d+) (.*)$/.exec(line);
    if (fmtp && opus.has(fmtp[1])) {
      out.push(`a=fmtp:${fmtp[1]} ${mergeParams(fmtp[2], params)}`);
      continue;
    }
    out.push(line);
    const rtpmap = /^a=rtpmap:(\d+) /.exec(line);
    // An Opus payload type without an fmtp line gets one right after its rtpmap.
    if (rtpmap && opus.has(rtpmap[1]) && !lines.some((l) => l.startsWith(`a=fmtp:${rtpmap[1]} `))) {
      out.push(`a=fmtp:${rtpmap[1]} ${mergeParams('', params)}`);
    }
  }
  return out.join(eol);
}

function mergeParams(text, params) {
  const map = new Map();
  for (const part of text.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k) map.set(k, v.join('='));
  }
  for (const [k, v] of Object.entries(params)) map.set(k, v);
  return [...map].map(([k, v]) => `${k}=${v}`).join(';');
}

/** The m-line kinds of an SDP in order (e.g. ['audio', 'audio', 'application']). */
export function mediaKinds(sdp) {
  return [...sdp.matchAll(/^m=(\w+) /gm)].map((m) => m[1]);
}

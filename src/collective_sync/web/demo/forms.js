// What the demo's forms accept, checked in the page with the server's limits before anything is
// sent, so that a person is told what to fix (pure functions: tested with Node, tests/js/).

/** The server's limits on a display name (protocol.md: 1–64 characters), checked before sending. */
const NAME_MAX = 64;
const SESSION_ID = /^[A-Za-z0-9_-]{3,64}$/;

/** A name as the server will keep it (trimmed), or why it cannot be used. Characters are code
 *  points, as the server counts them (an emoji is one, not two UTF-16 units). */
export function checkName(raw) {
  const name = String(raw ?? '').trim();
  if (!name) return { error: 'Enter a name, so that others can tell who you are.' };
  const length = [...name].length;
  if (length > NAME_MAX) return { error: `That name is ${length} characters long; use at most ${NAME_MAX}.` };
  return { name };
}

/** A session id from what was typed or pasted (an id, or an invite link), or why it is not one. */
export function checkSession(raw) {
  const text = String(raw ?? '').trim();
  let sid = text;
  let invite = null;
  try {
    const url = new URL(text);
    sid = url.searchParams.get('s') ?? '';
    invite = url.searchParams.get('invite');
  } catch { /* a bare id */ }
  if (!SESSION_ID.test(sid)) {
    return { error: 'That is not a session id or invite link. Paste the whole link you were sent (it contains “?s=”).' };
  }
  return { sid, invite };
}

/** The first user-perceived character of a name (an emoji with its modifiers, a letter with its
 *  accents), for its avatar: never half of a surrogate pair. */
export function initial(name) {
  const seg = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
  const first = seg.segment(String(name).trim())[Symbol.iterator]().next().value?.segment ?? '?';
  return first.toLocaleUpperCase();
}

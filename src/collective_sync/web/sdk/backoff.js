// Reconnect backoff with "equal jitter": half of each delay is fixed (so retries never bunch up
// at zero), half random (so the pages of a restarted server do not all come back at once).
// The Python twin is collective_sync/client/backoff.py; the two must agree.

export const BASE = 0.25; // seconds: the first retry waits 0.125-0.25 s
export const CAP = 8; // seconds: no retry waits longer than this

/**
 * Seconds to wait before retry `attempt` (0 is the first retry), given `rand` in [0, 1).
 * @param {number} attempt
 * @param {number} [rand] uniform in [0, 1); injectable so tests are exact
 */
export function backoffDelay(attempt, rand = Math.random()) {
  const d = Math.min(CAP, BASE * 2 ** attempt);
  return d / 2 + rand * d / 2;
}

// Pure parts of the audio thread (no AudioWorklet globals), so Node can test them.

/** Changes waiting for their instant, in (at, rank, arrival) order: state (rank 0) before control. */
export class ChangeQueue {
  constructor() {
    /** @type {Array<{at: number, rank: number, changes: object}>} */ this.items = [];
  }

  push(changes, at, rank = 0) {
    const q = this.items;
    let i = q.length;
    while (i > 0 && (q[i - 1].at > at || (q[i - 1].at === at && q[i - 1].rank > rank))) i--;
    q.splice(i, 0, { changes, at, rank });
  }

  /** The next change due at or before network time `t`, removed; null when none is. */
  popDue(t) {
    return this.items.length && this.items[0].at <= t ? this.items.shift() : null;
  }
}

// Run things at a network time: a queue ordered by network time (insertion order on ties),
// mapped to a local timeline through the clock. A port of collective_sync/timing/scheduler.py;
// the browser maps the same network times onto AudioContext time.

export class Scheduler {
  /** @param {(network: number) => number} toLocal */
  constructor(toLocal) {
    this.toLocal = toLocal;
    /** @type {Array<[number, number, any]>} */ this.queue = [];
    this.seq = 0;
  }

  schedule(at, payload) {
    const entry = [at, this.seq++, payload];
    let lo = 0, hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.queue[mid][0] <= at) lo = mid + 1; else hi = mid;
    }
    this.queue.splice(lo, 0, entry);
  }

  nextDue() { return this.queue.length ? this.queue[0][0] : null; }

  nextLocalDeadline() { return this.queue.length ? this.toLocal(this.queue[0][0]) : null; }

  /** @returns {Array<[number, any]>} */
  popDue(networkNow) {
    const out = [];
    while (this.queue.length && this.queue[0][0] <= networkNow) {
      const [at, , payload] = this.queue.shift();
      out.push([at, payload]);
    }
    return out;
  }

  get length() { return this.queue.length; }
}

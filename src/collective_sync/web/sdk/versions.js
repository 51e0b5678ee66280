// Per-path version guard for `state` messages (pure: tested with node --test).
//
// State reaches a client twice when it has a data channel: once over the unordered, lossy
// channel and again in the WebSocket's coalesced copy; either may come first, and a channel
// message may overtake a newer one. A path is applied only from a message whose `v` is above the
// last `v` applied to that path; a duplicate or an older message changes nothing. The `joined`
// snapshot is the floor: every message at or below its `v` is already in it.

export const MAX_PATHS = 16384; // remembered paths before the floor is raised (state holds ≤ 4096 live)

export class VersionGuard {
  constructor(floor = 0, maxPaths = MAX_PATHS) {
    this.floor = floor;
    this.maxPaths = maxPaths;
    /** @type {Map<string, number>} */ this.applied = new Map();
  }

  /**
   * The part of `set` that is newer than what was applied (the same object when all of it is),
   * or null when nothing is; what it returns counts as applied.
   */
  admit(set, v) {
    if (!(v > this.floor)) return null;
    let fresh = null;
    let all = true;
    for (const [path, value] of Object.entries(set)) {
      if ((this.applied.get(path) ?? this.floor) < v) {
        this.applied.set(path, v);
        (fresh ??= {})[path] = value;
      } else all = false;
    }
    if (this.applied.size > this.maxPaths) this.raiseFloor();
    return all ? set : fresh;
  }

  /** Forget the older half: messages at or below the new floor are then refused for every path. */
  raiseFloor() {
    const vs = [...this.applied.values()].sort((a, b) => a - b);
    this.floor = Math.max(this.floor, vs[vs.length >> 1]);
    for (const [path, v] of this.applied) if (v <= this.floor) this.applied.delete(path);
  }
}

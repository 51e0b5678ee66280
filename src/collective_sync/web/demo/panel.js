// The live network-clock panel: round trip, offset, drift, error bound, playout delay, late count,
// and a plot of each time exchange's offset against the disciplined clock.

const HISTORY = 120; // exchanges plotted

/** Seconds as a short human reading: µs below 1 ms, ms below 1 s. */
export function formatSeconds(s, signed = false) {
  if (s === null || s === undefined || !Number.isFinite(s)) return '–';
  const sign = signed && s >= 0 ? '+' : '';
  const a = Math.abs(s);
  if (a < 1e-3) return `${sign}${(s * 1e6).toFixed(0)} µs`;
  if (a < 1) return `${sign}${(s * 1e3).toFixed(2)} ms`;
  return `${sign}${s.toFixed(4)} s`;
}

/** The clock's state for people: one short sentence (the numbers are in the details). */
export function clockWords(online, locked, error) {
  if (!online) return 'Offline — reconnecting…';
  if (!locked || !Number.isFinite(error)) return 'Finding the shared time…';
  const ms = error * 1e3;
  return `In sync, ±${ms < 1 ? ms.toFixed(1) : ms.toFixed(0)} ms`;
}

export class ClockPanel {
  /** @param {import('/sdk/client.js').Client} client @param {HTMLCanvasElement} canvas */
  constructor(client, canvas) {
    this.client = client;
    this.canvas = canvas;
    /** @type {Array<{residual: number | null, error: number, rtt: number}>} */ this.points = [];
  }

  add(detail) {
    this.points.push(detail);
    if (this.points.length > HISTORY) this.points.shift();
  }

  render({ delay, late, online }) {
    const c = this.client;
    const last = this.points[this.points.length - 1];
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    set('clock-words', clockWords(online, c.network.locked, c.network.errorAt(c.clock())));
    set('st-rtt', formatSeconds(last?.rtt));
    set('st-offset', formatSeconds(c.network.phase(c.clock()), true));
    set('st-drift', `${c.network.freqPpm >= 0 ? '+' : ''}${c.network.freqPpm.toFixed(1)} ppm`);
    set('st-error', `± ${formatSeconds(c.network.error)}`);
    set('st-delay', delay === undefined ? '–' : formatSeconds(delay));
    set('st-late', String(late));
    this.plot();
  }

  plot() {
    const { canvas } = this;
    if (!canvas.clientWidth) return; // details closed: nothing to draw
    // Draw at the size the canvas is shown (CSS px × device pixels), so a phone's narrow plot is
    // not a stretched copy of a wide one.
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const pts = this.points.filter((p) => p.residual !== null);
    // Scale to the bulk of the points (a few queueing outliers would flatten the rest); those
    // beyond the scale sit on the edge.
    const mags = pts.map((p) => Math.abs(p.residual)).sort((a, b) => a - b);
    const p90 = mags.length ? mags[Math.floor(0.9 * (mags.length - 1))] : 0;
    const bound = Math.max(50e-6, 1.3 * p90, ...pts.slice(-10).map((p) => Math.min(p.error, 0.01)));
    const clipTo = (v) => Math.max(-bound, Math.min(bound, v));
    const top = 20; // the scale's label sits above the plotted band, never on a dot
    const mid = top + (h - top) / 2;
    const y = (v) => mid - (v / bound) * ((h - top) / 2 - 6);
    const x = (i) => 8 + (i / Math.max(1, HISTORY - 1)) * (w - 16);
    ctx.fillStyle = 'rgba(94, 224, 192, 0.12)';
    ctx.beginPath();
    pts.forEach((p, i) => (i ? ctx.lineTo(x(i), y(clipTo(p.error))) : ctx.moveTo(x(i), y(clipTo(p.error)))));
    for (let i = pts.length - 1; i >= 0; i--) ctx.lineTo(x(i), y(-clipTo(pts[i].error)));
    ctx.fill();
    ctx.strokeStyle = '#2a3050';
    ctx.beginPath(); ctx.moveTo(0, mid); ctx.lineTo(w, mid); ctx.stroke();
    ctx.fillStyle = '#5ee0c0';
    pts.forEach((p, i) => { ctx.beginPath(); ctx.arc(x(i), y(clipTo(p.residual)), 2.5, 0, 2 * Math.PI); ctx.fill(); });
    ctx.fillStyle = '#8f96b8';
    ctx.font = '11px ui-monospace, monospace';
    ctx.fillText(`scale ±${formatSeconds(bound)}`, 6, 14);
  }
}

// The session's geometry and polarity as a picture: the torus knot the engine follows, and a dot
// where the traversal is now, a visual metronome. The dot's angle is the engine's own
// θ = φ0 + ω·t at network time t (the same Engine, fed the same changes at the same instants as
// the audio thread), so every screen in the session shows the same phase at the same instant,
// whatever its local clock says.

import { Engine } from '../gaa/engine.js';

const TRAIL = 1.2; // radians of traversal drawn behind the dot
const STEPS = 360; // segments of the knot's outline
const LIGHT = [255, 210, 122];
const DARK = [138, 125, 255];

/** A point of the torus knot at toroidal angle θ (poloidal angle n·θ), in the engine's units. */
export function knotPoint(R, r, n, theta) {
  const ring = R + r * Math.cos(n * theta);
  return { x: ring * Math.cos(theta), y: ring * Math.sin(theta), z: r * Math.sin(n * theta) };
}

/** What the picture shows at network time t: the geometry, where the traversal is (θ), and the
 *  light/dark weights of the polarity (what the engine's odd and even harmonics carry). */
export function visualModel(engine, t) {
  const p = (k) => engine.params[k].value(t);
  const balance = p('polarity.balance');
  return {
    t,
    theta: p('geometry.phi0') + p('geometry.omega') * t,
    R: p('geometry.R'),
    r: p('geometry.r'),
    n: p('geometry.n'),
    omega: p('geometry.omega'),
    light: (p('polarity.light.amplitude') * p('polarity.light.enabled') * (1 - balance)) / 2,
    dark: (p('polarity.dark.amplitude') * p('polarity.dark.enabled') * (1 + balance)) / 2,
  };
}

/** The light/dark mix as a colour (rgb), weighted by the two channels' levels. */
export function polarityColour(light, dark) {
  const w = light + dark > 0 ? dark / (light + dark) : 0.5;
  return LIGHT.map((c, i) => Math.round(c + (DARK[i] - c) * w));
}

export class GeometryView {
  /**
   * @param {HTMLCanvasElement} canvas
   * @param {() => number} networkTime the session's network clock (seconds)
   */
  constructor(canvas, networkTime) {
    this.canvas = canvas;
    this.networkTime = networkTime;
    this.engine = new Engine();
    this.last = null; // the model of the last frame drawn (tests and support read it)
    this.drawnAt = null;
    this.frames = 0;
    this.running = false;
    this.label = '';
  }

  /** The state as it stands at network time `at` (a join, a rejoin). */
  reset(values, at) {
    this.engine = new Engine();
    this.engine.apply(values, at);
  }

  /** Changes taking effect at network time `due` (as the audio thread gets them). */
  apply(changes, due) { this.engine.apply(changes, due); }

  start() {
    if (this.running) return;
    this.running = true;
    const frame = () => {
      if (!this.running) return;
      this.draw();
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }

  stop() { this.running = false; }

  draw() {
    const { canvas } = this;
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const m = visualModel(this.engine, this.networkTime());
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    // A tilted view: y foreshortened, z lifts the curve (depth shades it).
    const extent = Math.max(m.R + m.r, 1e-3);
    const scale = (Math.min(w, h * 1.6) / 2 - 12) / extent;
    const project = (q) => [w / 2 + q.x * scale, h / 2 + (q.y * 0.5 - q.z * 0.6) * scale];
    const [cr, cg, cb] = polarityColour(m.light, m.dark);
    const level = Math.min(1, 0.35 + m.light + m.dark);
    // The torus itself, faintly: its outer and inner rims seen from above the tilt.
    ctx.strokeStyle = 'rgba(143, 150, 184, 0.25)';
    ctx.lineWidth = 1;
    for (const rim of [m.R + m.r, Math.max(m.R - m.r, 0)]) {
      ctx.beginPath();
      ctx.ellipse(w / 2, h / 2, rim * scale, rim * scale * 0.5, 0, 0, 2 * Math.PI);
      ctx.stroke();
    }
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = `rgba(${cr}, ${cg}, ${cb}, ${0.35 * level})`;
    ctx.beginPath();
    for (let i = 0; i <= STEPS; i++) {
      const [x, y] = project(knotPoint(m.R, m.r, m.n, (i / STEPS) * 2 * Math.PI));
      if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    }
    ctx.stroke();
    // The trail behind the dot, brighter towards it.
    const segments = 40;
    for (let i = 0; i < segments; i++) {
      const a = m.theta - TRAIL * (1 - i / segments), b = m.theta - TRAIL * (1 - (i + 1) / segments);
      const [x0, y0] = project(knotPoint(m.R, m.r, m.n, a));
      const [x1, y1] = project(knotPoint(m.R, m.r, m.n, b));
      ctx.strokeStyle = `rgba(${cr}, ${cg}, ${cb}, ${(level * i) / segments})`;
      ctx.lineWidth = 3;
      ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
    }
    const [dx, dy] = project(knotPoint(m.R, m.r, m.n, m.theta));
    ctx.fillStyle = `rgb(${cr}, ${cg}, ${cb})`;
    ctx.beginPath(); ctx.arc(dx, dy, 7, 0, 2 * Math.PI); ctx.fill();
    this.last = m;
    this.drawnAt = performance.now(); // when (performance clock): support and tests relate frames to true time
    this.frames++;
    const label = describe(m);
    if (label !== this.label) { this.label = label; canvas.setAttribute('aria-label', label); }
  }
}

/** The picture in words, for screen readers (changes with the state, not with every frame). */
export function describe(m) {
  const lean = Math.abs(m.light - m.dark) < 0.05 ? 'light and dark in balance'
    : m.light > m.dark ? 'leaning to the light' : 'leaning to the dark';
  return `Torus knot of winding ${Math.round(m.n)}, turning at ${m.omega.toFixed(2)} radians per second, ${lean}`;
}

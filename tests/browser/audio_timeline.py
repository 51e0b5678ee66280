"""A page's output timeline, read from the browser's output timestamps: when the host starved a
page's audio thread (an underrun), the samples after it are heard later for good. Recordings
across such a step show the machine, not the product, so the audio tests skip them."""

from __future__ import annotations

import numpy as np

STEP_LIMIT = 2.0  # ms: an output-timeline shift beyond this is an underrun's (headless jitter is ~0.1 ms)
STARVE_SPAN = 30.0  # s: a page starved this recently (output-timeline step) is not judged yet


def output_step_ms(pairs: np.ndarray, until: float, span: float = STARVE_SPAN) -> float:
    """How far the output timeline (true time vs context time) moved in the `span` seconds of
    true time before `until`: an underrun shifts it for good (every later sample is heard
    later), which biases the player's clock map for as long as that map looks back, and comes
    with a main thread starved of time exchanges too. A sustained jump of the residuals about one
    line (median of 7, so one jittery timestamp does not count)."""
    recent = pairs[(pairs[:, 0] >= until - span) & (pairs[:, 0] <= until)]
    if recent.shape[0] < 8:
        return 0.0
    slope, intercept = np.polyfit(recent[:, 1], recent[:, 0], 1)
    resid = recent[:, 0] - (intercept + slope * recent[:, 1])
    smooth = np.array([np.median(resid[i : i + 7]) for i in range(resid.size - 6)])
    return float(np.ptp(smooth)) * 1e3

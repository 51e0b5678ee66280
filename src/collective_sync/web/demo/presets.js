// Ceremony types: each is a starting sound (geometry, oscillators, polarity) named for the people
// who choose it. The leader's page sends a preset through the ordinary state path right after
// creating the session, so everyone (late joiners too, from the snapshot) starts from it.

export const PRESETS = Object.freeze({
  dawn: {
    label: 'Dawn',
    hint: 'bright and slow, leaning to the light',
    values: {
      'oscillators.base': 196, 'oscillators.cutoff': 3000, 'oscillators.harmonics': [1, 0.6, 0.4, 0.3, 0.2, 0.15, 0.1, 0.08],
      'geometry.R': 1.2, 'geometry.r': 0.25, 'geometry.n': 2, 'geometry.omega': 0.3,
      'polarity.balance': -0.6, 'polarity.light.amplitude': 0.9, 'polarity.dark.amplitude': 0.4,
    },
  },
  dusk: {
    label: 'Dusk',
    hint: 'warm and settling, leaning to the dark',
    values: {
      'oscillators.base': 147, 'oscillators.cutoff': 1200, 'oscillators.harmonics': [1, 0.7, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03],
      'geometry.R': 1, 'geometry.r': 0.5, 'geometry.n': 3, 'geometry.omega': 0.2,
      'polarity.balance': 0.5, 'polarity.light.amplitude': 0.5, 'polarity.dark.amplitude': 0.9,
    },
  },
  solstice: {
    label: 'Solstice',
    hint: 'still and balanced, light and dark alike',
    values: {
      'oscillators.base': 220, 'oscillators.cutoff': 2000, 'oscillators.harmonics': [1, 0.5, 0.33, 0.25, 0.2, 0.16, 0.14, 0.12],
      'geometry.R': 1.5, 'geometry.r': 0.4, 'geometry.n': 5, 'geometry.omega': 0.5,
      'polarity.balance': 0, 'polarity.light.amplitude': 0.8, 'polarity.dark.amplitude': 0.8,
    },
  },
});

/** A ceremony type as people read it (an unknown one, from another client, as it is named). */
export function ceremonyLabel(type) {
  if (!type) return 'Open session';
  return PRESETS[type]?.label ?? type.charAt(0).toUpperCase() + type.slice(1);
}

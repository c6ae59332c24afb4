// Seeded weight initialisers (truncated normal, normal, constant, Glorot): same seed, same weights, bit for bit.
import type { InitSpec } from './spec.js';
import { Rng } from '../util/rng.js';

/** Fills a (fanIn, fanOut) tensor. Values are computed in float64 and rounded once to float32. */
export function initTensor(spec: InitSpec, numel: number, fanIn: number, fanOut: number, rng: Rng): Float32Array {
  const out = new Float32Array(numel);
  switch (spec.type) {
    case 'zeros':
      break;
    case 'constant':
      out.fill(spec.value);
      break;
    case 'truncatedNormal':
      for (let i = 0; i < numel; i++) out[i] = rng.truncatedNormal(spec.stddev, spec.mean);
      break;
    case 'normal':
      for (let i = 0; i < numel; i++) out[i] = spec.mean + spec.stddev * rng.normal();
      break;
    case 'glorotUniform': {
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < numel; i++) out[i] = (2 * rng.next() - 1) * limit;
      break;
    }
    case 'glorotNormal': {
      // Keras: truncated normal with stddev sqrt(2 / (fanIn + fanOut)) / .87962566 (the truncation's correction).
      const stddev = Math.sqrt(2 / (fanIn + fanOut)) / 0.8796256610342398;
      for (let i = 0; i < numel; i++) out[i] = rng.truncatedNormal(stddev);
      break;
    }
  }
  return out;
}

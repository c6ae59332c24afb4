// Spatial geometry of a windowed layer over NHWC images (conv2d, maxpool): the attrs their kernels take.
import type { LayerSite } from './layer.js';

/** Per example: H, W, C in; KH, KW, SH, SW, padding (0 VALID, 1 SAME); OH, OW out (docs/kernels.md). */
export interface Geom {
  H: number;
  W: number;
  C: number;
  KH: number;
  KW: number;
  SH: number;
  SW: number;
  padding: number;
  OH: number;
  OW: number;
}

/** One spatial output size: SAME ceil(in/s); VALID floor((in − k)/s) + 1, needing in >= k. */
function spatialOut(inSize: number, k: number, s: number, same: boolean, where: string): number {
  if (same) return Math.ceil(inSize / s);
  if (inSize < k) throw new RangeError(`${where}: a VALID window of ${k} does not fit an input of ${inSize}; use padding 'same' or a smaller window`);
  return Math.floor((inSize - k) / s) + 1;
}

export function geometry(shape: number[], k: [number, number], s: [number, number], padding: 'same' | 'valid', site: LayerSite): Geom {
  const where = site.where;
  if (shape.length !== 3) throw new RangeError(`${where} needs an image input (H, W, C), got shape [${shape.join(', ')}]; give input.shape as [H, W, C]`);
  const [H, W, C] = shape as [number, number, number];
  const same = padding === 'same';
  return { H, W, C, KH: k[0], KW: k[1], SH: s[0], SW: s[1], padding: same ? 1 : 0, OH: spatialOut(H, k[0], s[0], same, where), OW: spatialOut(W, k[1], s[1], same, where) };
}

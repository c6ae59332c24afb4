// The layer modules by spec type: adding a layer kind is one module here (plus its kernels and its spec schema entry).
import type { LayerSpec } from '../spec.js';
import type { LayerModule, LayerPlan, LayerSite } from './layer.js';
import { activation } from './activation.js';
import { conv2d } from './conv2d.js';
import { dense } from './dense.js';
import { dropout } from './dropout.js';
import { lrn } from './lrn.js';
import { maxpool } from './maxpool.js';
import { reshape } from './reshape.js';

type Modules = { [T in LayerSpec['type']]: LayerModule<Extract<LayerSpec, { type: T }>> };

export const layerModules: Modules = {
  dense,
  conv2d,
  relu: activation,
  sigmoid: activation,
  tanh: activation,
  maxpool,
  lrn,
  dropout,
  flatten: reshape,
  reshape,
};

/** The plan of one layer: its module's answer for this spec and input shape. */
export function planLayer(spec: LayerSpec, input: number[], site: LayerSite): LayerPlan {
  return (layerModules[spec.type] as LayerModule).plan(spec, input, site);
}

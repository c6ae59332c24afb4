// flatten and reshape: a row-major (B, ...) buffer is already any shape of the same size, so no ops and no buffers.
import type { LayerSpec } from '../spec.js';
import { prod, type BuildContext, type Layer, type LayerModule } from './layer.js';

type ReshapeSpec = Extract<LayerSpec, { type: 'flatten' | 'reshape' }>;

/** The input buffers under a new name; an activation after a linear layer may still run in place. */
const same = (ctx: BuildContext): Layer => ({ y: ctx.x, dy: ctx.dx, inPlaceNext: 'inherit', forward: () => [], backward: () => [] });

export const reshape: LayerModule<ReshapeSpec> = {
  plan(spec, input, site) {
    const n = prod(input);
    if (spec.type === 'flatten') return { out: [n], params: [], kernels: [], build: same };
    if (prod(spec.shape) !== n)
      throw new RangeError(`${site.where}: cannot reshape [${input.join(', ')}] (${n} values) to [${spec.shape.join(', ')}] (${prod(spec.shape)} values)`);
    return { out: spec.shape, params: [], kernels: [], build: same };
  },
};

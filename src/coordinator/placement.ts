// Where everything lives (TF's log_device_placement, seed 001's lesson): per tower, each parameter with its device,
// its place in the weight arena and the kernels of its layer (from the layer's type, not guessed from its shape).
import type { ResolvedModelSpec } from '../model/spec.js';
import type { TowerInfo } from '../tower-port/protocol.js';

/** The kernels each layer type runs forward and backward (docs/kernels.md). */
const LAYER_KERNELS: Record<string, string[]> = {
  dense: ['dense_forward', 'dense_backward'],
  conv2d: ['conv2d_forward', 'conv2d_backward'],
};

/** Parameter name -> the kernels of the layer it belongs to (parameters are named '<layer>/kernel', '<layer>/bias'). */
function kernelsByParam(spec: ResolvedModelSpec): Map<string, string[]> {
  const byLayer = new Map<string, string[]>();
  spec.layers.forEach((layer, li) => {
    const kernels = LAYER_KERNELS[layer.type];
    if (kernels) byLayer.set(layer.name ?? `${layer.type}_${li}`, kernels);
  });
  return byLayer;
}

export function placementLines(built: TowerInfo[], spec: ResolvedModelSpec | undefined, schedule: string): string[] {
  const kernels = spec ? kernelsByParam(spec) : new Map<string, string[]>();
  const lines: string[] = [];
  built.forEach((b, r) => {
    lines.push(`tower ${r} on ${b.device}: ${b.paramCount} parameters in one weight arena and one gradient arena on ${b.device}`);
    let offset = 0;
    for (const p of b.params) {
      const layer = p.name.slice(0, p.name.lastIndexOf('/'));
      const k = kernels.get(layer) ?? ['?'];
      lines.push(`  ${p.name.padEnd(20)} [${p.shape.join('x')}] f32 on ${b.device} (arena +${offset}); kernels ${k.join(', ')}, optimizer update on ${b.device}`);
      offset += p.shape.reduce((a, x) => a * x, 1);
    }
    lines.push(`  all-reduce of the gradient arena: ${schedule}, executed on ${b.device}'s own native thread`);
  });
  return lines;
}

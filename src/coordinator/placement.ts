// Where everything lives (TF's log_device_placement, seed 001's lesson): per tower, each parameter with its device,
// its place in the weight arena and the kernels that really touch it (src/model/placement.ts, from the layer modules).
import type { TowerInfo } from '../tower-port/protocol.js';

export function placementLines(built: TowerInfo[], schedule: string): string[] {
  const lines: string[] = [];
  built.forEach((b, r) => {
    lines.push(`tower ${r} on ${b.device}: ${b.paramCount} parameters in one weight arena and one gradient arena on ${b.device}`);
    for (const p of b.params) {
      const update = p.update.length > 0 ? `; update ${p.update.join(', ')}` : '';
      lines.push(`  ${p.name.padEnd(20)} [${p.shape.join('x')}] f32 on ${b.device} (arena +${p.offset}); kernels ${p.forward}, ${p.backward}${update}, all on ${b.device}`);
    }
    lines.push(`  all-reduce of the gradient arena: ${schedule}, executed on ${b.device}'s own native thread`);
  });
  return lines;
}

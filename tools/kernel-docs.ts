// Renders docs/kernels.md from the native kernel contract table (Note [Kernel contracts] in cpp/kernel_contract.h).
// `npm run docs:kernels` rewrites the file; test/contract.test.ts fails when the committed one is stale.
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { native, type ContractArg, type KernelContract, type NativeContract } from '../src/native/addon.js';

export const KERNEL_DOCS_PATH = fileURLToPath(new URL('../docs/kernels.md', import.meta.url));

const INTRO = `# Kernels: the contract every backend implements

<!-- Generated from the native contract table (cpp/kernel_contracts.cc) by \`npm run docs:kernels\`; do not edit. -->

Every backend (\`cpu\`, \`cuda\`) and the float64 reference (\`src/reference/\`) implement the kernels below **by name**,
with the same inputs, outputs and attributes. Tensors are flat, row-major; shapes travel as numeric attributes.
Everything a row below says about buffers and attributes is checked once, when a program is compiled: the number
of inputs and outputs, every attribute (dims: non-negative integers; flags: 0 or 1, default 0), the constraints
between attributes, and each buffer's dtype and size (\`numel >= need\`). A bad call throws then, naming the op,
the device, the attributes, the argument and the sizes; nothing runs. What depends on values (labels and indices
in range, crop parameters, the step) is checked when the kernel runs, before it writes anything. Outputs may be
read before they are written only where the kernel says "accumulates" or "in place".

Dtypes: \`f32\` unless stated; labels and indices are \`i32\`; raw dataset bytes are \`u8\`.
`;

function hyperSection(h: NativeContract['hyper']): string {
  const rows: Array<[number, string, string]> = [
    [h.lr, 'lr', 'learning rate for this step'],
    [h.step, 't', 'optimizer step count t (1 for the first update)'],
    [h.gradScale, 'gradScale', "loss/gradient scale: this shard's weight, `1 / globalBatch` (so shard gradients **sum** to the mean-loss gradient)"],
  ];
  rows.sort((a, b) => a[0] - b[0]);
  return [
    `\`hyper\` is a small f32 buffer of per-step constants (${h.size} slots, of which kernels read the first ${h.used}) that the`,
    'runtime rewrites before each step, so a compiled program need not change when the learning rate, the step or the',
    'shard weight changes. The semantics below use the names of its slots (cpp/hyper.h, src/native/hyper.ts):',
    '',
    '| slot | name | meaning |',
    '|---|---|---|',
    ...rows.map(([slot, name, meaning]) => `| \`hyper[${slot}]\` | ${name} | ${meaning} |`),
    '',
  ].join('\n');
}

const CONV_PREAMBLE = `Layout NHWC: x (B,H,W,C) is flat row-major, channels fastest. Filters are TF's HWIO (KH,KW,C,K). Windows are KH×KW
with strides SH, SW; \`padding\` is 0 = VALID (OH = ⌈(H − KH + 1)/SH⌉, needs H ≥ KH, no padding) or 1 = SAME (TF's rule:
OH = ⌈H/SH⌉, pad_total = max((OH − 1)·SH + KH − H, 0), pad_top = ⌊pad_total/2⌋, the odd row at the bottom; likewise
OW and pad_left). OH and OW are given and checked against the rule. Output position (oh, ow) reads input rows
oh·SH − pad_top + kh, kh ∈ [0, KH), and columns likewise; cells outside the input are padding.
`;

const OUTRO = `The dropout hash, on unsigned 32-bit words (\`fmix32\` is MurmurHash3's finaliser: h ^= h>>16; h *= 0x85ebca6b;
h ^= h>>13; h *= 0xc2b2ae35; h ^= h>>16); lo/hi are the low and high 32 bits of seed and step:

    k  = fmix32(lo(seed) ^ 0x9e3779b9);  k = fmix32(k ^ hi(seed) ^ 0x7f4a7c15)
    k  = fmix32(k ^ lo(step) ^ 0x85ebca6b);  k1 = fmix32(k ^ hi(step) ^ 0xc2b2ae35);  k2 = fmix32(k1 ^ 0x27d4eb2f)
    h(seed, step, i) = fmix32(fmix32(i + k1) ^ k2)

## Precision

Float32 kernels must agree with the float64 reference to a relative error below 1e-5, measured as
\`‖a − ref‖₂ / ‖ref‖₂\` over the whole output, on random non-zero inputs. Reductions over a batch or a long vector
accumulate in a way that keeps this bound for the sizes the tests use (up to B=256, I=1000).
`;

/** Markdown table cells may not hold a bare '|'. */
const cell = (s: string) => s.replace(/\|/g, '\\|');

function arg(a: ContractArg): string {
  if (a.shape === 'hyper') return 'hyper';
  return `${a.name} ${a.shape}${a.dtype === 'f32' ? '' : ` ${a.dtype}`}`;
}

function args(list: ContractArg[], optional: number): string {
  if (list.length === 0) return '—';
  const required = list.slice(0, list.length - optional).map(arg).join(', ');
  const rest = list.slice(list.length - optional).map((a) => ` [, ${arg(a)}]`).join('');
  return required + rest;
}

function attrs(k: KernelContract): string {
  return k.attrs
    .map((a) => {
      const notes = [...(a.kind === 'flag' ? ['0/1, default 0'] : []), ...(a.note ? [a.note] : [])];
      return notes.length ? `${a.name} (${notes.join('; ')})` : a.name;
    })
    .join(', ');
}

function row(k: KernelContract): string {
  return `| \`${k.name}\` | ${cell(args(k.inputs, 0))} | ${cell(args(k.outputs, k.optionalOutputs))} | ${cell(attrs(k))} | ${cell(k.computes)} |`;
}

/** docs/kernels.md for a contract table. */
export function renderKernelDocs(c: NativeContract): string {
  const groups: string[] = [];
  for (const k of c.kernels) if (!groups.includes(k.group)) groups.push(k.group);
  const sections = groups.map((g) =>
    [
      `## ${g}`,
      '',
      ...(g === 'Convolution and pooling' ? [CONV_PREAMBLE] : []),
      '| name | inputs | outputs | attrs | computes |',
      '|---|---|---|---|---|',
      ...c.kernels.filter((k) => k.group === g).map(row),
      '',
    ].join('\n'),
  );
  return [INTRO, hyperSection(c.hyper), ...sections, OUTRO].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(KERNEL_DOCS_PATH, renderKernelDocs(native().contract()));
  console.log(`wrote ${KERNEL_DOCS_PATH}`);
}

// Seed 001's block network: six 1000x1000 sigmoid blocks, mean of the output as the loss, Adam (1e-4, 0.5, 0.9),
// clipping by global norm 5.0, random 64x1000 inputs, on 1 tower and then on TOWERS (default 2), with the per-step
// time breakdown per tower and where every weight lives (seed 001's lesson: the tower version must not be slower).
import { createRuntime, blocks, blockNetwork, blockTraining } from 'towerline';

const steps = Number(process.env.STEPS ?? 30);
for (const towers of [1, Number(process.env.TOWERS ?? 2)]) {
  const rt = await createRuntime({ devices: `cpu*${towers}` });
  try {
    const run = rt.train({ model: blockNetwork(), ...blockTraining(), data: blocks({ batchSize: 64 }), steps, seed: 1 });
    let printed = false;
    const times: number[] = [];
    run.steps$.subscribe((e) => {
      if (!printed) {
        for (const line of rt.placement().slice(0, 3)) console.log(line);
        printed = true;
      }
      if (e.step > 1) times.push(e.secPerBatch);
      if (e.step % 10 === 0 || e.step === 1) {
        const t = e.towers.map((t) => `${t.device} fwd ${t.forward.toFixed(1)} bwd ${t.backward.toFixed(1)} reduce ${t.reduce.toFixed(1)} (idle ${t.idle.toFixed(1)}) update ${t.update.toFixed(1)} ms`).join('; ');
        console.log(`[${towers} tower${towers > 1 ? 's' : ''}] step ${e.step}, loss = ${e.loss.toFixed(4)}, |g| = ${e.gradientNorm?.toFixed(4)}, ${(e.secPerBatch * 1000).toFixed(1)} ms/step: ${t}`);
      }
    });
    await run.done;
    times.sort((a, b) => a - b);
    console.log(`[${towers} tower${towers > 1 ? 's' : ''}] median step ${(times[times.length >> 1]! * 1000).toFixed(1)} ms\n`);
  } finally {
    await rt.close();
  }
}

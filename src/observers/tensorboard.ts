// The TensorBoard observer: scalars per step (loss, learning rate, examples/sec, gradient norm), accuracy per
// evaluation, and weight histograms every N steps (tower 0's weights, read between two steps).
import { EventWriter } from '../io/tfevents.js';
import type { RunObserver, RunStreams } from './observer.js';

export async function tensorBoardObserver(
  logDir: string,
  streams: RunStreams,
  histograms: { every: number; read: () => Promise<Array<[string, Float32Array]>>; betweenSteps: (f: () => Promise<void>) => Promise<void> } | undefined,
): Promise<RunObserver> {
  const tb = await EventWriter.open(logDir);
  const pending: Array<Promise<void>> = [];
  const steps = streams.records$.subscribe(({ event: e }) => {
    tb.scalar('loss', e.loss, e.step);
    tb.scalar('learning_rate', e.learningRate, e.step);
    tb.scalar('examples_per_sec', e.examplesPerSec, e.step);
    tb.scalar('gradient_norm', e.gradientNorm ?? NaN, e.step);
    if (histograms && e.step % histograms.every === 0) {
      const h = histograms;
      pending.push(h.betweenSteps(async () => {
        for (const [name, w] of await h.read()) tb.histogram(`weights/${name}`, w, e.step);
      }));
    }
  });
  const events = streams.events$.subscribe((e) => {
    if (e.type === 'evaluation') tb.scalar('accuracy', e.accuracy, e.step);
  });
  return {
    close: async () => {
      steps.unsubscribe();
      events.unsubscribe();
      await Promise.allSettled(pending);
      await tb.close();
    },
  };
}

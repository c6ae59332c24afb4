// Streams Chrome trace-event JSON (viewable in Perfetto or chrome://tracing) to a file as spans are recorded.
import { createWriteStream, type WriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';

const PID = 1;
/** Events are joined into chunks of about this many characters before going to the stream. */
const CHUNK_CHARS = 64 * 1024;

/** Microseconds, rounded to the nanosecond so float noise like 1000.0000000002 does not bloat the file. */
function micros(ms: number): number {
  return Math.round(ms * 1e6) / 1e3;
}

/**
 * Writes `{"traceEvents":[...],"displayTimeUnit":"ms"}` incrementally: memory holds at most one chunk plus
 * whatever the stream has not yet handed to the disk. The file is valid JSON once close() resolves.
 */
export class TraceWriter {
  private readonly out: WriteStream;
  private chunk = '';
  private count = 0;
  private failure: Error | undefined;
  private closing: Promise<void> | undefined;

  constructor(readonly path: string) {
    this.out = createWriteStream(path, { flags: 'w' });
    // Without a listener a failed open would crash the process; keep the error for close() instead.
    this.out.on('error', (e) => {
      this.failure ??= e;
    });
    this.out.write('{"traceEvents":[\n');
    this.event({ name: 'process_name', ph: 'M', pid: PID, tid: 0, args: { name: 'towerline' } });
  }

  /** Names thread `tid` in the viewer (a thread_name metadata event). */
  track(tid: number, name: string): void {
    this.checkTid(tid);
    this.event({ name: 'thread_name', ph: 'M', pid: PID, tid, args: { name } });
  }

  /** A complete event (ph 'X') on thread `tid`; times are in milliseconds and stored in microseconds. */
  span(tid: number, name: string, startMs: number, durMs: number, args?: Record<string, unknown>): void {
    this.checkTid(tid);
    if (!Number.isFinite(startMs)) throw new RangeError(`TraceWriter: span '${name}' start must be finite, given ${startMs}`);
    if (!Number.isFinite(durMs) || durMs < 0) throw new RangeError(`TraceWriter: span '${name}' duration must be finite and >= 0, given ${durMs}`);
    const ev: Record<string, unknown> = { name, ph: 'X', pid: PID, tid, ts: micros(startMs), dur: micros(durMs) };
    if (args !== undefined) ev['args'] = args;
    this.event(ev);
  }

  private checkTid(tid: number): void {
    if (!Number.isSafeInteger(tid) || tid < 0) throw new RangeError(`TraceWriter: tid must be a non-negative integer, given ${tid}`);
  }

  private event(ev: Record<string, unknown>): void {
    if (this.closing) throw new Error(`TraceWriter: ${this.path} is closed`);
    // Stringify before touching the buffer so an unserialisable args object leaves the file well-formed.
    const json = JSON.stringify(ev);
    this.chunk += (this.count === 0 ? '' : ',\n') + json;
    this.count++;
    if (this.chunk.length >= CHUNK_CHARS) this.drainChunk();
  }

  private drainChunk(): void {
    if (this.chunk.length === 0) return;
    this.out.write(this.chunk);
    this.chunk = '';
  }

  /** Writes the closing brackets and waits for the file to be complete. Safe to call more than once. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.drainChunk();
      this.out.end('\n],"displayTimeUnit":"ms"}\n');
      try {
        await finished(this.out);
      } catch (e) {
        this.failure ??= e instanceof Error ? e : new Error(String(e));
      }
      if (this.failure) throw new Error(`TraceWriter: writing ${this.path} failed`, { cause: this.failure });
    })();
    return this.closing;
  }
}

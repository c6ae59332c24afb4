// The parameter server's part of the addon (cpp/napi/ps.cc, ps_link.cc), typed: native() with these functions.
import { native, type NativeAddon } from '../native/addon.js';

/** What a pull resolves with: the version copied and the smallest live clock then (Note [Staleness]). */
export interface Pulled {
  version: number;
  minClock: number;
  /** The tower's own clock then: clock - minClock is the staleness of the push to come. */
  clock: number;
  /** On the native clock (nowMs). */
  startMs: number;
  endMs: number;
}

/** What a push resolves with, once the server took it (cpp/ps/server.h Applied). */
export interface Applied {
  /** The server's version after this push. */
  version: number;
  /** The tower's clock after this push. */
  clock: number;
  lag: number;
  staleness: number;
  lr: number;
  normSq: number;
  regLoss: number;
  skipped: boolean;
  startMs: number;
  endMs: number;
}

export interface ServerConfig {
  device: number;
  weights: number;
  grads: number;
  hyper: number;
  normSq: number;
  regLoss: number;
  apply: number;
  towers: number;
  lr: Float32Array;
  stalenessLr: boolean;
  version: number;
  /** A 1-element buffer the apply program takes the push's global squared norm from. */
  normSqIn: number;
}

/** A link message's header (cpp/napi/ps_link.cc Header); src/async/protocol.ts gives the values their meaning. */
export interface LinkHeader {
  kind: number;
  tower: number;
  batch: number;
  version: number;
  values: number[];
}

export interface LinkOptions {
  rank: number;
  size: number;
  runId: string;
  rdzv: string;
  address?: string;
  iface?: string;
  timeoutMs?: number;
}

export interface PsAddon extends NativeAddon {
  psCreate(c: ServerConfig): number;
  psPull(server: number, rank: number, weightArena: number): Promise<Pulled>;
  psPush(server: number, rank: number, gradArena: number, normSq: number): Promise<Applied>;
  psDrop(server: number, rank: number): void;
  psInfo(server: number): { version: number; clocks: number[]; alive: boolean[] };
  psSnapshot(server: number, buffers: number[]): Promise<{ version: number; tensors: Float32Array[] }>;
  psRelease(server: number): void;
  psLinkConnect(o: LinkOptions): Promise<number>;
  psLinkSendWork(link: number, peer: number, slot: number, header: LinkHeader, server: number, rank: number, offset: number, length: number): Promise<Pulled>;
  psLinkSendStop(link: number, peer: number, slot: number, header: LinkHeader, timeoutMs: number): Promise<void>;
  psLinkRecvGradient(link: number, peer: number, slot: number, length: number): Promise<LinkHeader>;
  /** normSq: the whole gradient's squared norm (Note [Global norm across shards]). */
  psPushStaged(link: number, peer: number, slot: number, server: number, rank: number, offset: number, length: number, normSq: number): Promise<Applied>;
  psLinkRecvWork(link: number, peer: number, slot: number, weightArena: number, offset: number, length: number, timeoutMs: number): Promise<LinkHeader>;
  psLinkSendGradient(link: number, peer: number, slot: number, gradArena: number, offset: number, length: number, header: LinkHeader, timeoutMs: number): Promise<void>;
  /** The header, then the buffers' values (read together between two pushes), on the up (to the lead) or down tags. */
  psLinkSendBuffers(link: number, peer: number, slot: number, buffers: number[], header: LinkHeader, up: boolean, timeoutMs: number): Promise<void>;
  /** What psLinkSendBuffers sent, into `buffers` (its header first when withHeader). */
  psLinkRecvBuffers(link: number, peer: number, slot: number, buffers: number[], up: boolean, withHeader: boolean, timeoutMs: number): Promise<LinkHeader>;
  psLinkAbort(link: number, peer: number, slot: number): void;
  psLinkClose(link: number): void;
}

export function psNative(): PsAddon {
  return native() as PsAddon;
}

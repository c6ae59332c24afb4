// Which parameters each parameter server owns when an async run across processes has several (src/async/remote.ts).

// Note [Parameter shards]: with N servers the parameter list is cut, in declaration order, into N contiguous
// shards, each parameter whole on one server (its weights, optimizer slots and EMA live on that server only; the
// native server owns a contiguous range of the arenas, ServerTower's `shard`). The cut is greedy by bytes: server k
// takes parameters while that brings its bytes closer to an even share of what is left, (bytes left) / (servers
// left), and always takes at least one, and leaves at least one for every server after it. A pure function of the
// sizes, so every process computes the same shards without talking. A parameter larger than an even share makes its
// server heavier than the rest (MNIST 784-500-10 on 2 servers: the 784×500 weights alone on server 0, the other
// three tensors on server 1); splitting a tensor across servers is not done.

export interface Shard {
  /** Parameters [first, end) in declaration order. */
  first: number;
  end: number;
  bytes: number;
}

/** The shards of `bytes` (each parameter's size, declaration order) over `servers` servers. */
export function shardBySize(bytes: readonly number[], servers: number): Shard[] {
  if (!Number.isInteger(servers) || servers < 1) throw new Error(`parameter shards: expected a whole number of servers >= 1; given ${servers}`);
  if (bytes.length < servers)
    throw new Error(`parameter shards: ${servers} parameter servers need at least ${servers} parameters (each parameter lives whole on one server); the model has ${bytes.length}`);
  const shards: Shard[] = [];
  let next = 0;
  let left = bytes.reduce((a, b) => a + b, 0);
  for (let k = 0; k < servers; k++) {
    const serversLeft = servers - k;
    const share = left / serversLeft;
    const first = next;
    let taken = bytes[next++]!;
    // Keep one parameter for each later server; the last server takes the rest.
    while (next < bytes.length - (serversLeft - 1) && (serversLeft === 1 || Math.abs(taken + bytes[next]! - share) < Math.abs(taken - share))) taken += bytes[next++]!;
    if (serversLeft === 1) while (next < bytes.length) taken += bytes[next++]!;
    shards.push({ first, end: next, bytes: taken });
    left -= taken;
  }
  return shards;
}

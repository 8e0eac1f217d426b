import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type MetricType } from 'prom-client';
import type { AntiEntropy } from '../antientropy/antientropy.js';
import { LATENCY_BOUNDS, type Stats } from '../commands/context.js';
import type { Replicator } from '../replication/replicator.js';
import type { Capacity, Store } from '../store/index.js';

/** What the metrics are read from, at scrape time: nothing on the request path knows about them. */
export interface MetricsSource {
  readonly stats: Stats;
  readonly store: Store;
  /** `[storage] memory_limit_mb` and the data it counts. */
  readonly capacity: Capacity;
  readonly antiEntropy: AntiEntropy;
  readonly replicator: Replicator | undefined;
  readonly connections: () => number;
}

/**
 * The node's Prometheus metrics (`prom-client`), in a registry of its own. Every family reads the
 * counters the node keeps anyway (Stats, the store, replication, anti-entropy) when it is scraped, so
 * serving metrics adds no work to a request; names follow Prometheus conventions (`_total` counters,
 * `_seconds`, `_bytes`).
 */
export function createRegistry(src: MetricsSource): Registry {
  const registry = new Registry();
  const registers = [registry];
  const { stats, store } = src;

  /** A counter whose value is read from elsewhere at scrape time. */
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], read: (set: (labels: Partial<Record<L, string>>, value: number) => void) => void): void => {
    new Counter<L>({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        read((labels, value) => this.inc(labels, value));
      },
    });
  };
  const gauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  };

  counter('merklekv_requests_total', 'Client requests by command and result (error: answered ERROR at once).', ['command', 'result'], (set) => {
    stats.commandNames.forEach((name, id) => {
      const calls = stats.calls[id] as number;
      const failures = stats.failures[id] as number;
      if (calls === 0) return;
      set({ command: name.toLowerCase(), result: 'ok' }, calls - failures);
      if (failures > 0) set({ command: name.toLowerCase(), result: 'error' }, failures);
    });
    // Requests that never named a command (unknown words, empty lines, lines too long).
    const named = stats.calls.reduce((n, c) => n + c, 0);
    if (stats.commands > named) set({ command: 'unknown', result: 'error' }, stats.commands - named);
  });
  registry.registerMetric(new RequestLatency(stats));
  counter('merklekv_errors_total', 'Requests answered ERROR, for any reason.', [], (set) => set({}, stats.errors));
  gauge('merklekv_connections', 'Open client connections.', src.connections);
  counter('merklekv_connections_total', 'Client connections accepted.', [], (set) => set({}, stats.connectionsTotal));
  counter('merklekv_connections_rejected_total', 'Client connections refused at max_connections.', [], (set) => set({}, stats.connectionsRejected));
  counter('merklekv_network_bytes_total', 'Bytes read from and written to clients.', ['direction'], (set) => {
    set({ direction: 'in' }, stats.bytesIn);
    set({ direction: 'out' }, stats.bytesOut);
  });

  gauge('merklekv_keys', 'Live keys.', () => store.size);
  gauge('merklekv_tombstones', 'Deleted or expired keys remembered until they are purged.', () => store.tombstoneCount);
  gauge('merklekv_expiring_keys', 'Live keys with an expiry time.', () => store.figures().expiring);
  gauge('merklekv_lmdb_size_bytes', "Size of LMDB's data file.", () => store.figures().lmdbBytes);
  gauge('merklekv_log_sync_lag_seconds', 'Age of the oldest write in the log not yet on disk (0: none).', () => store.figures().syncLagMs / 1000);
  gauge('merklekv_lmdb_lag_seconds', 'Age of the oldest write in the log that LMDB does not hold yet (0: none).', () => store.figures().lmdbLagMs / 1000);
  gauge('merklekv_pending_writes', 'Writes in the log that LMDB does not hold yet.', () => store.figures().pendingWrites);
  counter('merklekv_log_syncs_total', 'fdatasyncs of the write-ahead log.', [], (set) => set({}, store.figures().syncs));
  counter('merklekv_lmdb_commit_failures_total', 'LMDB commits that failed (and were retried).', [], (set) => set({}, store.figures().lmdbFailures));
  const { capacity } = src;
  gauge('merklekv_data_bytes', 'Bytes of the live records (keys and records, set members included): what memory_limit_mb bounds.', () => capacity.usedBytes);
  gauge('merklekv_memory_limit_bytes', '[storage] memory_limit_mb in bytes (0: no limit).', () => capacity.limitBytes);
  gauge('merklekv_storage_over_limit', '1 while the data is past memory_limit_mb (writes from other nodes can take it there).', () => (capacity.over ? 1 : 0));
  counter('merklekv_storage_full_refusals_total', 'Client writes refused with Storage full.', [], (set) => set({}, capacity.refused));

  const r = src.replicator;
  if (r !== undefined) {
    gauge('merklekv_replication_enabled', '1 unless REPLICATE disable is in force.', () => (r.enabled ? 1 : 0));
    gauge('merklekv_broker_connected', '1 while connected to the MQTT broker.', () => (r.stats.connected ? 1 : 0));
    counter('merklekv_replication_published_total', 'Writes published to the broker.', [], (set) => set({}, r.stats.publishedOps));
    counter('merklekv_replication_publish_failures_total', 'Writes not published (broker away or refused).', [], (set) => set({}, r.stats.publishFailures));
    counter('merklekv_replication_applied_total', "Other nodes' writes applied here.", [], (set) => set({}, r.stats.appliedOps));
    counter('merklekv_replication_rejected_total', 'Replication messages or ops refused, by reason.', ['reason'], (set) => {
      set({ reason: 'signature' }, r.stats.rejected);
      set({ reason: 'invalid' }, r.stats.invalid);
      set({ reason: 'older' }, r.stats.ignoredOps);
    });
    gauge('merklekv_replication_lag_seconds', "From a remote write's clock reading to its being applied here, for the last one.", () => r.stats.lagMs / 1000);
  }

  counter('merklekv_antientropy_syncs_total', 'Anti-entropy exchanges this node started, by peer and result.', ['peer', 'result'], (set) => {
    for (const [peer, t] of src.antiEntropy.peerTotals()) {
      set({ peer, result: 'ok' }, t.syncs);
      set({ peer, result: 'error' }, t.failures);
    }
  });
  counter('merklekv_antientropy_repairs_total', 'Records repaired by anti-entropy, by peer and direction.', ['peer', 'direction'], (set) => {
    for (const [peer, t] of src.antiEntropy.peerTotals()) {
      set({ peer, direction: 'sent' }, t.keysSent);
      set({ peer, direction: 'received' }, t.keysReceived);
    }
  });
  counter('merklekv_antientropy_bytes_total', 'Bytes of anti-entropy exchanges this node started, by peer and direction.', ['peer', 'direction'], (set) => {
    for (const [peer, t] of src.antiEntropy.peerTotals()) {
      set({ peer, direction: 'sent' }, t.bytesSent);
      set({ peer, direction: 'received' }, t.bytesReceived);
    }
  });
  counter('merklekv_antientropy_duration_seconds_total', 'Time spent in anti-entropy exchanges, by peer.', ['peer'], (set) => {
    for (const [peer, t] of src.antiEntropy.peerTotals()) set({ peer }, t.seconds);
  });

  const streams = src.antiEntropy.streams;
  counter('merklekv_antientropy_streamed_keys_total', 'Records copied into this node by anti-entropy streams (a new node filling, SYNC --full).', [], (set) =>
    set({}, streams.figures().keys),
  );
  counter('merklekv_antientropy_streamed_bytes_total', 'Bytes of anti-entropy stream frames received.', [], (set) => set({}, streams.figures().bytes));
  gauge('merklekv_antientropy_streams', 'Anti-entropy streams filling this node now.', () => streams.figures().running);
  gauge('merklekv_antientropy_stream_progress_ratio', 'How far the stream furthest behind has come (1 with none running).', () => streams.figures().percent / 100);

  collectDefaultMetrics({ register: registry });
  return registry;
}

/**
 * merklekv_request_duration_seconds: a histogram read from Stats' buckets, which the connection fills
 * per batch (every request of a batch counts with the batch's time, from reading it to sending its
 * replies, commit waits included).
 */
class RequestLatency extends Histogram {
  constructor(private readonly stats: Stats) {
    super({ name: NAME, help: HELP, buckets: [...LATENCY_BOUNDS], registers: [] });
  }

  override get(): ReturnType<Histogram['get']> {
    return this.getForPromString();
  }

  /** What prom-client's registry reads for the text format (it prefers this method to get()). */
  async getForPromString(): ReturnType<Histogram['get']> {
    const values: Awaited<ReturnType<Histogram['get']>>['values'] = [];
    let cumulative = 0;
    LATENCY_BOUNDS.forEach((le, i) => {
      cumulative += this.stats.latency[i] as number;
      values.push({ metricName: `${NAME}_bucket`, labels: { le }, value: cumulative });
    });
    cumulative += this.stats.latency[LATENCY_BOUNDS.length] as number;
    values.push({ metricName: `${NAME}_bucket`, labels: { le: '+Inf' }, value: cumulative });
    values.push({ metricName: `${NAME}_sum`, labels: {}, value: this.stats.latencySum });
    values.push({ metricName: `${NAME}_count`, labels: {}, value: cumulative });
    return Promise.resolve({ name: NAME, help: HELP, type: 'histogram' as unknown as MetricType, values, aggregator: 'sum', collect: () => {} });
  }
}

const NAME = 'merklekv_request_duration_seconds';
const HELP = 'Time from reading a request to sending its reply.';

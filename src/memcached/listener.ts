import type { AddressInfo } from 'node:net';
import type { TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Context } from '../commands/context.js';
import { KvServer, type ServerLimits } from '../server/server.js';
import { McCounters, type McContext } from './commands.js';
import { McDialect } from './dialect.js';
import { MEMCACHED_LIMITS } from './parser.js';
import { memcachedStats } from './stats.js';

/**
 * What `version` and `stats` report: the memcached release whose text protocol the listener follows,
 * then MerkleKV's own version. memcached tooling reads the leading x.y.z to decide what the server
 * can do (libmemcached's memcapable expects 1.6 behaviour only from a 1.6 server).
 */
export function memcachedVersion(ours: string): string {
  return `${MEMCACHED_PROTOCOL_VERSION}-merkle-kv-${ours}`;
}
const MEMCACHED_PROTOCOL_VERSION = '1.6.18';

export interface MemcachedOptions {
  readonly ctx: Context;
  readonly logger: Logger;
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  /** `[memcached] item_size_max`: memcached's -I (parser.ts, itemSize). */
  readonly itemSizeMax: number;
  readonly tls?: TlsOptions | undefined;
}

/**
 * The memcached listener (`[memcached]`): a KvServer whose connections speak memcached's text protocol
 * to the node's store, with the client port's connection limit, idle timeout and TLS setting.
 * memcached's text protocol has no AUTH: bind it to a trusted address.
 */
export class MemcachedListener {
  readonly server: KvServer;
  private readonly counters = new McCounters();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly startedAt = Date.now();
  private address: AddressInfo | undefined;
  /** What `stats settings` reports of the limits a config reload may change. */
  private limits: ServerLimits;

  constructor(opts: MemcachedOptions) {
    const { ctx } = opts;
    this.limits = { maxConnections: opts.maxConnections, idleTimeoutMs: opts.idleTimeoutMs };
    const mc: McContext = {
      counters: this.counters,
      store: ctx.store,
      limits: { maxKeyBytes: Math.min(ctx.limits.maxKeyBytes, MEMCACHED_LIMITS.maxKeyBytes), maxValueBytes: ctx.limits.maxValueBytes },
      version: memcachedVersion(ctx.version),
      schedule: (delayMs, flush) => this.schedule(delayMs, flush),
      stats: (group) =>
        memcachedStats(group, {
          counters: this.counters,
          version: mc.version,
          startedAt: this.startedAt,
          maxConnections: this.limits.maxConnections,
          currentConnections: this.server.connectionCount,
          totalConnections: ctx.stats.connectionsTotal,
          rejectedConnections: ctx.stats.connectionsRejected,
          items: ctx.store.size,
          bytes: ctx.store.figures().lmdbBytes,
          dataDir: ctx.store.path,
          port: this.address?.port ?? 0,
          bindAddress: this.address?.address ?? '',
          bytesRead: this.server.traffic.bytesIn,
          bytesWritten: this.server.traffic.bytesOut,
          yields: this.server.traffic.yields,
          itemSizeMax: opts.itemSizeMax,
          idleTimeoutSeconds: Math.floor(this.limits.idleTimeoutMs / 1000),
          tls: opts.tls !== undefined,
        }),
    };
    const limits = { ...MEMCACHED_LIMITS, maxKeyBytes: mc.limits.maxKeyBytes, maxValueBytes: ctx.limits.maxValueBytes, itemSizeMax: opts.itemSizeMax };
    this.server = new KvServer({
      ctx,
      logger: opts.logger,
      maxConnections: opts.maxConnections,
      dialect: () => new McDialect(mc, opts.logger, limits),
      idleTimeoutMs: opts.idleTimeoutMs,
      tls: opts.tls,
    });
  }

  /** Starts listening; the address is what `stats settings` reports. */
  async listen(port: number, host: string): Promise<AddressInfo> {
    this.address = await this.server.listen(port, host);
    return this.address;
  }

  /** New connection limit and idle timeout (a config reload). */
  configure(limits: ServerLimits): void {
    this.limits = limits;
    this.server.configure(limits);
  }

  /** Stops accepting, answers what is in flight, and drops flushes still waiting for their delay. */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.server.close();
  }

  /** A flush_all replaces the one still waiting for its delay, as memcached keeps one flush time. */
  private schedule(delayMs: number, flush: () => void): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    if (delayMs === 0) return flush();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      flush();
    }, delayMs);
    timer.unref();
    this.timers.add(timer);
  }

}

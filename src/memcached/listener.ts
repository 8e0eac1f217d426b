import type { TlsOptions } from 'node:tls';
import type { Logger } from 'pino';
import type { Context } from '../commands/context.js';
import { KvServer } from '../server/server.js';
import { McCounters, type McContext } from './commands.js';
import { McDialect } from './dialect.js';
import { MEMCACHED_LIMITS } from './parser.js';

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

  constructor(opts: MemcachedOptions) {
    const { ctx } = opts;
    const mc: McContext = {
      counters: this.counters,
      store: ctx.store,
      limits: { maxKeyBytes: Math.min(ctx.limits.maxKeyBytes, MEMCACHED_LIMITS.maxKeyBytes), maxValueBytes: ctx.limits.maxValueBytes },
      version: memcachedVersion(ctx.version),
      schedule: (delayMs, flush) => this.schedule(delayMs, flush),
      stats: () => this.stats(ctx, opts.maxConnections),
    };
    const limits = { ...MEMCACHED_LIMITS, maxKeyBytes: mc.limits.maxKeyBytes, maxValueBytes: ctx.limits.maxValueBytes };
    this.server = new KvServer({
      ctx,
      logger: opts.logger,
      maxConnections: opts.maxConnections,
      dialect: () => new McDialect(mc, opts.logger, limits),
      idleTimeoutMs: opts.idleTimeoutMs,
      tls: opts.tls,
    });
  }

  /** Stops accepting, answers what is in flight, and drops flushes still waiting for their delay. */
  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    await this.server.close();
  }

  private schedule(delayMs: number, flush: () => void): void {
    if (delayMs === 0) return flush();
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      flush();
    }, delayMs);
    timer.unref();
    this.timers.add(timer);
  }

  /** The general statistics memcached reports that mean something here. */
  private stats(ctx: Context, maxConnections: number): [string, string | number][] {
    const c = this.counters;
    const cpu = process.cpuUsage();
    const seconds = (us: number): string => (us / 1e6).toFixed(6);
    return [
      ['pid', process.pid],
      ['uptime', Math.floor((Date.now() - this.startedAt) / 1000)],
      ['time', Math.floor(Date.now() / 1000)],
      ['version', memcachedVersion(ctx.version)],
      ['pointer_size', 64],
      ['rusage_user', seconds(cpu.user)],
      ['rusage_system', seconds(cpu.system)],
      ['max_connections', maxConnections],
      ['curr_connections', this.server.connectionCount],
      ['total_connections', ctx.stats.connectionsTotal],
      ['cmd_get', c.cmdGet],
      ['cmd_set', c.cmdSet],
      ['cmd_flush', c.cmdFlush],
      ['cmd_touch', c.cmdTouch],
      ['get_hits', c.getHits],
      ['get_misses', c.getMisses],
      ['curr_items', ctx.store.size],
      ['bytes', ctx.store.lmdbBytes()],
      ['limit_maxbytes', 0],
      ['threads', 1],
      ['evictions', 0],
    ];
  }
}

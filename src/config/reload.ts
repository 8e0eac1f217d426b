import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { Logger } from 'pino';
import { masked } from '../cli/check.js';
import { FIELDS, type Config } from './schema.js';

/*
 * Reloading the configuration (SIGHUP, CONFIG RELOAD; DESIGN.md section 3): the node's sources are read
 * again and validated whole by the loader; a configuration that does not validate, or that a part
 * refuses (a certificate that cannot be read), changes nothing. Otherwise each part applies its own
 * keys, registered with `onReload`; a changed key no part applies needs a restart, and is logged so.
 */

/** What a reload came to: the changed keys applied live and those that need a restart, or why it was refused whole. */
export type ReloadResult =
  | { readonly ok: true; readonly applied: readonly string[]; readonly restart: readonly string[] }
  | { readonly ok: false; readonly reason: string };

/**
 * Takes the new values of the keys it was registered for (called once per reload that changes any of
 * them, after every check passed). Returns those of its keys it could not apply live after all (they are
 * logged as needing a restart), or nothing.
 */
export type ApplyReload = (next: Config, prev: Config) => readonly string[] | void;

/** Throws (a ConfigError saying why) to refuse the whole reload; runs before any part applies anything. */
export type CheckReload = (next: Config, prev: Config) => void;

/**
 * Settings naming a file the node reads at start: a change of the file's content counts as a change
 * of the setting (a renewed certificate under the same name).
 */
const FILE_KEYS = ['network.tls.cert_file', 'network.tls.key_file', 'network.tls.ca_file', 'mqtt.ca_file'] as const;

interface Handler {
  readonly keys: readonly string[];
  readonly apply: ApplyReload;
  readonly check: CheckReload | undefined;
}

/** The registry of live settings, and the one place a reload is decided, applied and logged. */
export class Reloads {
  private readonly handlers: Handler[] = [];
  /** The configuration in effect: the start-up one with every change applied since (not those awaiting a restart). */
  private running: Config;
  /** Digest of each FILE_KEYS file's content as last read for the configuration in effect. */
  private readonly files = new Map<string, string>();

  /** `load` reads the node's configuration sources again; undefined: the node has none to re-read. */
  constructor(
    config: Config,
    private readonly logger: Logger,
    private readonly load: (() => Config) | undefined,
  ) {
    this.running = config;
    for (const key of FILE_KEYS) this.files.set(key, digestOf(valueAt(config, key)));
  }

  /** The configuration in effect. */
  get config(): Config {
    return this.running;
  }

  /**
   * Registers a part's live keys: dotted paths as in schema.ts; a trailing `*` matches every key it
   * prefixes (`storage.backup_*`). `apply` runs on each reload that changes one of them, after `check`
   * (if any) and every other part's check have passed.
   */
  onReload(keys: readonly string[], apply: ApplyReload, check?: CheckReload): void {
    this.handlers.push({ keys, apply, check });
  }

  /** Re-reads the sources and applies what changed; logs why it was refused, or each changed key and what became of it. */
  reload(): ReloadResult {
    const prev = this.running;
    let next: Config;
    let changed: string[];
    let handlers: Handler[];
    try {
      if (this.load === undefined) throw new Error('this node was started without a configuration to re-read');
      next = this.load();
      changed = this.changes(next);
      handlers = this.handlers.filter((h) => changed.some((key) => covers(h.keys, key)));
      for (const h of handlers) h.check?.(next, prev);
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).replace(/[\r\n]+/g, ' ');
      this.logger.error({ reason }, `config reload refused, still running on the previous configuration: ${reason}`);
      return { ok: false, reason };
    }
    const notLive = new Set(changed.filter((key) => !this.handlers.some((h) => covers(h.keys, key))));
    for (const h of handlers) {
      try {
        for (const key of h.apply(next, prev) ?? []) notLive.add(key);
      } catch (err) {
        // Checked beforehand, so not expected: what this part could not take still needs a restart.
        this.logger.error({ err, keys: h.keys }, 'config reload: applying failed');
        for (const key of changed) if (covers(h.keys, key)) notLive.add(key);
      }
    }
    return this.settle(prev, next, changed, notLive);
  }

  /** Logs each changed key, and makes the applied ones part of the configuration in effect. */
  private settle(prev: Config, next: Config, changed: readonly string[], notLive: ReadonlySet<string>): ReloadResult {
    const [shownPrev, shownNext] = [masked(prev), masked(next)];
    const running = structuredClone(prev);
    const applied: string[] = [];
    const restart: string[] = [];
    for (const key of changed) {
      const fields = { key, from: valueAt(shownPrev, key), to: valueAt(shownNext, key) };
      if (notLive.has(key)) {
        restart.push(key);
        this.logger.info(fields, `config reload: ${key} changed; needs a restart to take effect`);
        continue;
      }
      applied.push(key);
      setAt(running, key, valueAt(next, key));
      if (this.files.has(key)) this.files.set(key, digestOf(valueAt(next, key)));
      this.logger.info(fields, `config reload: ${key} changed; applied`);
    }
    this.running = running;
    this.logger.info({ applied: applied.length, restart: restart.length }, changed.length === 0 ? 'config reloaded: nothing changed' : 'config reloaded');
    return { ok: true, applied, restart };
  }

  /** The keys whose value (or, for FILE_KEYS, whose file's content) differs from the configuration in effect. */
  private changes(next: Config): string[] {
    return Object.keys(FIELDS).filter((key) => {
      if (!isDeepStrictEqual(valueAt(this.running, key), valueAt(next, key))) return true;
      const digest = this.files.get(key);
      return digest !== undefined && digest !== digestOf(valueAt(next, key));
    });
  }
}

function covers(patterns: readonly string[], key: string): boolean {
  return patterns.some((p) => (p.endsWith('*') ? key.startsWith(p.slice(0, -1)) : p === key));
}

/** The value at a dotted path of the configuration. */
function valueAt(config: Config, path: string): unknown {
  let at: unknown = config;
  for (const part of path.split('.')) at = (at as Record<string, unknown> | undefined)?.[part];
  return at;
}

function setAt(config: Config, path: string, value: unknown): void {
  const parts = path.split('.');
  let table = config as unknown as Record<string, unknown>;
  for (const part of parts.slice(0, -1)) table = table[part] as Record<string, unknown>;
  table[parts[parts.length - 1] as string] = structuredClone(value);
}

/** What identifies a file's content ('' for no file, or one that cannot be read). */
function digestOf(path: unknown): string {
  if (typeof path !== 'string' || path === '') return '';
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return '';
  }
}

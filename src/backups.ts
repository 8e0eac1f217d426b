import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { StorageError } from './errors.js';
import { expected } from './expected.js';
import { listBackups, type BackupResult, type Store } from './store/index.js';

/*
 * Live backups (issue #26): `BACKUP [path]` and `[storage] backup_interval_hours`. Each backup is a new
 * directory (store/backup.ts makes it consistent and whole); one runs at a time. Without a path it is
 * named by the time it began, under `backup_path`, and only the newest `backup_keep` there are kept.
 */

export interface BackupSettings {
  /** Where backups without a path of their own go. */
  readonly path: string;
  /** How many of those to keep. */
  readonly keep: number;
  /** Hours between scheduled backups; 0: none. */
  readonly intervalHours: number;
}

/** The backup settings of a config (`[storage] backup_*`). */
export function backupSettings(config: Config): BackupSettings {
  return { path: config.storage.backup_path, keep: config.storage.backup_keep, intervalHours: config.storage.backup_interval_hours };
}

/** What STATS storage reports of backups. */
export interface BackupFigures {
  readonly taken: number;
  readonly failed: number;
  /** When the last one that succeeded began (ms since the Unix epoch); 0 none. */
  readonly lastAt: number;
  readonly lastDir: string;
  readonly running: boolean;
}

export class Backups {
  private running = false;
  private taken = 0;
  private failed = 0;
  private lastAt = 0;
  private lastDir = '';
  private timer: NodeJS.Timeout | undefined;
  /** The backup running, if any: the store must not close under it. */
  private current: Promise<unknown> | undefined;

  constructor(
    private readonly store: Store,
    private settings: BackupSettings,
    private readonly logger: Logger,
  ) {}

  /**
   * Starts a backup into `target` (undefined: a new directory under backup_path named by the time);
   * returns its directory at once and a promise of the result. Refused while another one runs.
   */
  take(target?: string): { dir: string; done: Promise<BackupResult> } {
    if (this.running) throw new StorageError('a backup is already running');
    const began = Date.now();
    const dir = resolve(target ?? join(this.settings.path, new Date(began).toISOString().replaceAll(':', '-')));
    this.running = true;
    const done = this.store.backup(dir).then(
      (result) => {
        this.taken++;
        this.lastAt = began;
        this.lastDir = result.dir;
        this.logger.info({ dir: result.dir, bytes: result.bytes, logSegments: result.segments, ms: result.ms }, 'backup taken');
        if (target === undefined) this.rotate();
        return result;
      },
      (err: unknown) => {
        this.failed++;
        this.logger.error({ err, dir }, 'backup failed');
        throw err;
      },
    );
    this.current = expected(done.finally(() => (this.running = false)));
    return { dir, done };
  }

  /** Starts the schedule (if any); a reload calls `configure` with the new settings. */
  start(): void {
    this.schedule();
  }

  configure(settings: BackupSettings): void {
    this.settings = settings;
    this.schedule();
  }

  /** Ends the schedule and waits for a backup still running (LMDB's copy reads the open environment). */
  async close(): Promise<void> {
    this.stop();
    await this.current?.catch(() => {});
  }

  private stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  figures(): BackupFigures {
    return { taken: this.taken, failed: this.failed, lastAt: this.lastAt, lastDir: this.lastDir, running: this.running };
  }

  private schedule(): void {
    this.stop();
    const hours = this.settings.intervalHours;
    if (hours <= 0) return;
    this.timer = setInterval(() => {
      if (this.running) return;
      void expected(this.take().done);
    }, hours * 3_600_000);
    this.timer.unref();
  }

  /** Removes the oldest backups under backup_path beyond backup_keep (only directories a backup made). */
  private rotate(): void {
    const all = listBackups(resolve(this.settings.path));
    for (const old of all.slice(0, Math.max(0, all.length - this.settings.keep))) {
      try {
        rmSync(old, { recursive: true, force: true });
        this.logger.info({ dir: old }, 'old backup removed (backup_keep)');
      } catch (err) {
        this.logger.warn({ err, dir: old }, 'could not remove an old backup');
      }
    }
  }
}

import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** The file beside the data that holds where copies were cut short. */
const FILE = 'copy-resume.json';

/**
 * Where a copy of a peer's whole store (stream.ts, copyAll) was cut short, by the peer's node id: the
 * key it resumes from. Kept in a small file in the data directory, rewritten whole (to a temporary file,
 * then renamed) after each frame, so a node restarted in the middle of filling itself resumes its copy
 * rather than reconciling a million differences. A file that cannot be read is taken as empty: the next
 * exchange then compares, which is slower, never wrong.
 */
export class CopyCursors {
  private readonly cursors = new Map<string, Buffer>();
  private readonly path: string | undefined;

  /** `dir`: the data directory (undefined: kept in memory only). */
  constructor(
    dir: string | undefined,
    private readonly logger: Logger,
  ) {
    this.path = dir === undefined ? undefined : join(dir, FILE);
    if (this.path === undefined) return;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      return;
    }
    try {
      const saved = JSON.parse(text) as unknown;
      if (typeof saved !== 'object' || saved === null) return;
      for (const [peer, key] of Object.entries(saved)) if (typeof key === 'string') this.cursors.set(peer, Buffer.from(key, 'base64'));
    } catch {
      logger.warn({ file: this.path }, 'anti-entropy: unreadable copy resume file ignored');
    }
  }

  get(peer: string): Buffer | undefined {
    return this.cursors.get(peer);
  }

  set(peer: string, resume: Buffer): void {
    this.cursors.set(peer, Buffer.from(resume));
    this.save();
  }

  delete(peer: string): void {
    if (this.cursors.delete(peer)) this.save();
  }

  private save(): void {
    if (this.path === undefined) return;
    try {
      if (this.cursors.size === 0) {
        rmSync(this.path, { force: true });
        return;
      }
      const saved: Record<string, string> = {};
      for (const [peer, key] of this.cursors) saved[peer] = key.toString('base64');
      writeFileSync(`${this.path}.tmp`, JSON.stringify(saved));
      renameSync(`${this.path}.tmp`, this.path);
    } catch (err) {
      // Only a restart's resume is lost: the next exchange compares instead.
      this.logger.warn({ err }, 'anti-entropy: cannot save where a copy stopped');
    }
  }
}

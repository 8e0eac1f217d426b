import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach } from 'vitest';
import { openDatabases, type Databases } from '../../src/store/databases.js';

/*
 * What the unit tests of the store's parts share. Not test/helpers.ts: that imports the whole node, and
 * these tests need only the store's parts.
 */

export const silent = pino({ level: 'silent' });

let cleanups: (() => Promise<void> | void)[] = [];

// Registered in every test file that imports this one: undoes what its test set up, newest first.
afterEach(async () => {
  const todo = cleanups.reverse();
  cleanups = [];
  for (const f of todo) await f();
});

/** Runs `f` after the current test, before what was deferred earlier. */
export function defer(f: () => Promise<void> | void): void {
  cleanups.push(f);
}

/** LMDB's databases in a new directory (`label` names it), closed and removed after the test. */
export function tempDatabases(label: string): { dir: string; dbs: Databases } {
  const dir = mkdtempSync(join(tmpdir(), `merkle-kv-${label}-`));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const dbs = openDatabases(dir);
  defer(() => dbs.root.close());
  return { dir, dbs };
}

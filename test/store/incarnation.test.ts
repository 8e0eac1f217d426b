import { cpSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { open } from 'lmdb';
import { describe, expect, it, onTestFinished } from 'vitest';
import { Store } from '../../src/store/index.js';
import { silent, tempDir } from '../helpers.js';

function openStore(path: string): Store {
  const store = Store.open({ path, nodeId: 'n1', maxClockSkewMs: 60_000, tombstoneGraceSeconds: 86_400, logger: silent });
  onTestFinished(() => store.close());
  return store;
}

const NEW_NAME = /^n1~[0-9a-f]{8}$/;

describe("the name a store's counter totals go under", () => {
  it('is new for an empty store, kept across clean restarts, and new after a crash', async () => {
    const path = join(tempDir(), 'db');
    const store = openStore(path);
    const first = store.counterWriter;
    expect(first).toMatch(NEW_NAME);
    void store.set(Buffer.from('k'), Buffer.from('v'));
    await store.close();
    const again = openStore(path);
    expect(again.counterWriter).toBe(first);
    // A crash leaves the log's segments: the node may have lost acknowledged writes (an OS crash), so its totals may be behind.
    void again.set(Buffer.from('k2'), Buffer.from('v'));
    again.flush();
    const crashed = join(tempDir(), 'crashed');
    cpSync(path, crashed, { recursive: true });
    expect(readdirSync(crashed).some((f) => f.startsWith('wal-'))).toBe(true);
    const afterCrash = openStore(crashed);
    expect(afterCrash.counterWriter).toMatch(NEW_NAME);
    expect(afterCrash.counterWriter).not.toBe(first);
  });

  it('is new for a store started on a backup, once: the backup manifest is set aside', async () => {
    const path = join(tempDir(), 'db');
    const store = openStore(path);
    void store.set(Buffer.from('k'), Buffer.from('v'));
    const backup = join(tempDir(), 'backup');
    await store.backup(backup);
    const restored = openStore(backup);
    expect(restored.counterWriter).toMatch(NEW_NAME);
    expect(restored.counterWriter).not.toBe(store.counterWriter);
    expect(existsSync(join(backup, 'backup.json'))).toBe(false);
    expect(existsSync(join(backup, 'restored-from-backup.json'))).toBe(true);
    const name = restored.counterWriter;
    await restored.close();
    expect(openStore(backup).counterWriter).toBe(name);
  });

  it("is the node id for a store an older release wrote (records, and no name saved)", async () => {
    const path = join(tempDir(), 'db');
    const store = openStore(path);
    void store.set(Buffer.from('k'), Buffer.from('v'));
    await store.close();
    // What an older release leaves: the same records, no name in the directory's facts.
    const env = open({ path, keyEncoding: 'binary' });
    const meta = env.openDB<string, string>('meta', { keyEncoding: 'ordered-binary', encoding: 'msgpack' });
    await meta.remove('counter_writer');
    await env.close();
    expect(openStore(path).counterWriter).toBe('n1');
  });
});

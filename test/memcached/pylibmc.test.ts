import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { LineClient, startTestNode } from '../helpers.js';

/**
 * pylibmc, the Python wrapper of libmemcached: a client nobody here wrote, which keeps CAS uniques in a
 * signed 64-bit integer and prints them into libmemcached's 20-byte buffer. A unique of 2^63 or more made
 * about half of its `cas` calls fail (issue #25). The node runs in this process: Python runs beside it.
 */
const run = promisify(execFile);
/** Debian's python3-pylibmc is for Debian's python3, which may not be the first python3 on the PATH. */
const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import pylibmc']).status === 0);
/** With CI=true pylibmc is installed (.ci/run) and the test must run. */
const runIt = python !== undefined || process.env.CI === 'true';

const KEYS = 50;
const ROUNDS = 2000;

/** gets then cas +1 on KEYS counters, ROUNDS times in all; then a cas with a stale unique. */
const SCRIPT = `
import json, sys, pylibmc
c = pylibmc.Client(["127.0.0.1:" + sys.argv[1]], behaviors={"cas": True})
keys = ["cas:%d" % i for i in range(${KEYS})]
for k in keys:
    c.set(k, "0")
ok = failed = 0
uniques = []
for i in range(${ROUNDS}):
    k = keys[i % ${KEYS}]
    value, unique = c.gets(k)
    uniques.append(unique)
    if c.cas(k, str(int(value) + 1), unique):
        ok += 1
    else:
        failed += 1
c.set("stale", "a")
value, unique = c.gets("stale")
c.set("stale", "b")
stale = c.cas("stale", "c", unique)
print(json.dumps({"ok": ok, "failed": failed, "low": min(uniques), "high": max(uniques), "stale": stale, "after": c.get("stale")}))
`;

describe.runIf(runIt)('the memcached listener with pylibmc (libmemcached)', () => {
  it('takes every gets/cas round trip, with uniques in 1 .. 2^63 - 1, and refuses a stale unique', async () => {
    expect(python, 'python3-pylibmc is not installed').toBeDefined();
    const node = await startTestNode({ 'memcached.enabled': 'true', 'memcached.port': '0' });
    const port = String(node.memcachedAddress?.port);
    const { stdout } = await run(python as string, ['-c', SCRIPT, port], { encoding: 'utf8', timeout: 60_000 });
    const result = JSON.parse(stdout) as { ok: number; failed: number; low: number; high: number; stale: boolean; after: string };
    expect(result).toMatchObject({ ok: ROUNDS, failed: 0, stale: false, after: 'b' });
    // JSON reads Python's integers as doubles: enough to see the sign and the range.
    expect(result.low).toBeGreaterThanOrEqual(1);
    expect(result.high).toBeLessThanOrEqual(2 ** 63);
    // Every increment landed: each counter was taken ROUNDS / KEYS times.
    const line = await LineClient.connect(node.address.port);
    for (const k of ['cas:0', `cas:${KEYS - 1}`]) expect(await line.call(`GET ${k}`)).toBe(`VALUE ${ROUNDS / KEYS}`);
  }, 90_000);
});

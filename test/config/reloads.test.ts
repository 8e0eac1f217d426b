import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { Reloads } from '../../src/config/reload.js';
import type { Config } from '../../src/config/schema.js';
import { ConfigError } from '../../src/errors.js';
import { silent } from '../helpers.js';

describe('Reloads', () => {
  it('runs a part for its own keys (a trailing * a prefix), checks every part before any applies, and reports the rest as needing a restart', () => {
    const flags: Record<string, string> = { node_id: 'r', 'storage.max_key_bytes': '100' };
    const load = (): Config => loadConfig({ flags });
    const reloads = new Reloads(load(), silent, load);
    const applied: string[] = [];
    let refuse = false;
    reloads.onReload(['storage.max_key_*'], (next) => void applied.push(`keys ${next.storage.max_key_bytes}`));
    reloads.onReload(
      ['logging.level', 'anti_entropy.interval_seconds'],
      (next) => {
        applied.push(`level ${next.logging.level}`);
        // Taken in part: the interval waits for a restart.
        return ['anti_entropy.interval_seconds'];
      },
      () => {
        if (refuse) throw new ConfigError('not now');
      },
    );
    expect(reloads.reload()).toEqual({ ok: true, applied: [], restart: [] });
    expect(applied).toEqual([]);

    Object.assign(flags, { 'storage.max_key_bytes': '200', 'logging.level': 'warn', 'anti_entropy.interval_seconds': '5', 'storage.max_value_bytes': '99' });
    refuse = true;
    expect(reloads.reload()).toEqual({ ok: false, reason: 'not now' });
    expect(applied).toEqual([]);
    expect(reloads.config.storage.max_key_bytes).toBe(100);

    refuse = false;
    expect(reloads.reload()).toEqual({
      ok: true,
      applied: ['storage.max_key_bytes', 'logging.level'],
      restart: ['anti_entropy.interval_seconds', 'storage.max_value_bytes'],
    });
    expect(applied).toEqual(['keys 200', 'level warn']);
    // In effect now: what was applied; what waits for a restart keeps its old value, and is reported again.
    expect(reloads.config.storage.max_key_bytes).toBe(200);
    expect(reloads.config.storage.max_value_bytes).toBe(1_048_576);
    expect(reloads.reload()).toEqual({ ok: true, applied: [], restart: ['anti_entropy.interval_seconds', 'storage.max_value_bytes'] });
    expect(applied).toHaveLength(3);

    flags['storage.max_key_bytes'] = '0';
    expect(reloads.reload()).toEqual({ ok: false, reason: 'command-line flag (storage.max_key_bytes) must be in 1..1970, got 0' });
  });
});

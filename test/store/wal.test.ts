import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { StorageError } from '../../src/errors.js';
import { listSegments, readSegment, segmentName, WriteAheadLog } from '../../src/store/wal.js';
import { silent, tempDir } from '../helpers.js';

function openLog(dir: string, mode: 'periodic' | 'always' = 'periodic'): WriteAheadLog {
  const log = new WriteAheadLog({ dir, mode, periodMs: 20, logger: silent, firstSeq: 0 });
  onTestFinished(() => log.close(false));
  return log;
}

const bodies = Array.from({ length: 5 }, (_, i) => Buffer.from(`entry number ${i} `.repeat(i + 1)));

/** A segment holding `bodies`, written and flushed; returns its path. */
function writeSegment(dir: string): string {
  const log = openLog(dir);
  for (const b of bodies) log.append(b);
  log.flush();
  return join(dir, segmentName(0));
}

function read(path: string): { found: Buffer[]; torn: number[] } {
  const torn: number[] = [];
  const found = readSegment(path, 1 << 20, (offset) => torn.push(offset));
  return { found, torn };
}

describe('write-ahead log', () => {
  it('reads back what was appended, in order, only after flush()', () => {
    const dir = tempDir();
    const log = openLog(dir);
    log.append(Buffer.from('first'));
    const path = join(dir, segmentName(0));
    expect(readFileSync(path)).toHaveLength(0);
    log.flush();
    for (const b of bodies.slice(1)) log.append(b);
    log.flush();
    expect(read(path)).toEqual({ found: [Buffer.from('first'), ...bodies.slice(1)], torn: [] });
  });

  it('drops a last entry cut short, or a tail of zeros, as a torn write', () => {
    const dir = tempDir();
    const path = writeSegment(dir);
    const whole = readFileSync(path);
    for (const cut of [1, 5, 12, 20]) {
      writeFileSync(path, whole.subarray(0, whole.length - cut));
      const r = read(path);
      expect(r.found).toEqual(bodies.slice(0, 4));
      expect(r.torn).toHaveLength(1);
    }
    writeFileSync(path, Buffer.concat([whole, Buffer.alloc(4096)]));
    expect(read(path)).toEqual({ found: bodies, torn: [whole.length] });
  });

  it('refuses damage before the tail, naming the file and the offset', () => {
    const dir = tempDir();
    const path = writeSegment(dir);
    const whole = readFileSync(path);
    const secondEntry = 12 + (bodies[0] as Buffer).length;
    // A flipped byte in a body (checksum), and in a length (length check), each with entries after it.
    for (const at of [secondEntry + 14, secondEntry + 1]) {
      const damaged = Buffer.from(whole);
      damaged[at] = (damaged[at] as number) ^ 0x40;
      writeFileSync(path, damaged);
      let error: unknown;
      try {
        read(path);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(StorageError);
      expect((error as Error).message).toContain(`${path} is damaged at offset ${secondEntry}`);
      expect((error as Error).message).toMatch(/start it empty: anti-entropy refills it/);
    }
  });

  it('rotates to a new segment and lists segments oldest first', () => {
    const dir = tempDir();
    const log = openLog(dir);
    log.append(Buffer.from('a'));
    expect(log.rotate()).toBe(0);
    log.append(Buffer.from('b'));
    log.flush();
    expect(log.segment).toBe(1);
    const segs = listSegments(dir);
    expect(segs.map((s) => s.seq)).toEqual([0, 1]);
    expect(segs.map((s) => read(s.path).found.map(String))).toEqual([['a'], ['b']]);
  });

  it('with "always", an append waits for one fdatasync shared by the whole group', async () => {
    const dir = tempDir();
    const log = openLog(dir, 'always');
    const ends = bodies.map((b) => log.append(b));
    const waits = ends.map((end) => log.durableAfter(end));
    expect(new Set(waits).size).toBe(1);
    expect(waits[0]).toBeInstanceOf(Promise);
    const before = log.syncs;
    log.flush();
    await waits[0];
    expect(log.syncs - before).toBe(1);
    expect(log.durableAfter(ends[4] as number)).toBeNull();
    expect(log.syncLagMs).toBe(0);
  });

  it('with "periodic", acknowledges at once and syncs within the period', async () => {
    const dir = tempDir();
    const log = openLog(dir, 'periodic');
    const end = log.append(Buffer.from('x'));
    expect(log.durableAfter(end)).toBeNull();
    log.flush();
    const before = log.syncs;
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(log.syncs).toBeGreaterThan(before);
    expect(log.syncLagMs).toBe(0);
  });
});

import { describe, expect, it } from 'vitest';
import { applyPlain, LineClient, startTestNode } from '../helpers.js';

async function client(flags: Record<string, string> = {}): Promise<LineClient> {
  const node = await startTestNode(flags);
  return LineClient.connect(node.address.port);
}

describe('commands over TCP', () => {
  it('GET, SET, DEL and DELETE', async () => {
    const c = await client();
    expect(await c.call('GET user:1')).toBe('NOT_FOUND');
    expect(await c.call('SET user:1 alice')).toBe('OK');
    expect(await c.call('GET user:1')).toBe('VALUE alice');
    expect(await c.call('SET user:1 alice smith  jr')).toBe('OK');
    expect(await c.call('GET user:1')).toBe('VALUE alice smith  jr');
    expect(await c.call('DEL user:1')).toBe('DELETED');
    expect(await c.call('DEL user:1')).toBe('NOT_FOUND');
    expect(await c.call('GET user:1')).toBe('NOT_FOUND');
    await c.call('SET x 1');
    expect(await c.call('DELETE x')).toBe('DELETED');
  });

  it('DEL of a key this node does not hold still writes a tombstone, so an older write arriving later stays deleted', async () => {
    const node = await startTestNode();
    const c = await LineClient.connect(node.address.port);
    const before = node.store.newVersion();
    expect(await c.call('DEL never:seen')).toBe('NOT_FOUND');
    expect(node.store.tombstoneCount).toBe(1);
    // A SET made elsewhere before the DEL, delivered after it (replication or repair).
    expect(applyPlain(node.store, Buffer.from('never:seen'), { ...before, node: 'other' }, Buffer.from('old'))).toBeUndefined();
    expect(await c.call('GET never:seen')).toBe('NOT_FOUND');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 0');
  });

  it('keys are case-sensitive, command words are not', async () => {
    const c = await client();
    expect(await c.call('set Key v1')).toBe('OK');
    expect(await c.call('sEt key v2')).toBe('OK');
    expect(await c.call('get Key')).toBe('VALUE v1');
    expect(await c.call('GET key')).toBe('VALUE v2');
  });

  it('UTF-8 keys and values round-trip', async () => {
    const c = await client();
    expect(await c.call('SET ключ значение ✓ 🚀')).toBe('OK');
    expect(await c.call('GET ключ')).toBe('VALUE значение ✓ 🚀');
  });

  it('INC/DEC and their aliases', async () => {
    const c = await client();
    expect(await c.call('INC n')).toBe('VALUE 1');
    expect(await c.call('INCR n 41')).toBe('VALUE 42');
    expect(await c.call('DEC n')).toBe('VALUE 41');
    expect(await c.call('DECR n 50')).toBe('VALUE -9');
    expect(await c.call('DEC fresh 5')).toBe('VALUE -5');
    expect(await c.call('GET n')).toBe('VALUE -9');
    await c.call('SET word hello');
    expect(await c.call('INC word')).toBe("ERROR Value for key 'word' is not a valid number");
    await c.call('SET big 9223372036854775807');
    expect(await c.call('INC big')).toMatch(/^ERROR increment or decrement would overflow/);
    expect(await c.call('GET big')).toBe('VALUE 9223372036854775807');
  });

  it('APPEND and PREPEND', async () => {
    const c = await client();
    expect(await c.call('APPEND s world')).toBe('VALUE world');
    expect(await c.call('PREPEND s hello-')).toBe('VALUE hello-world');
    // The value starts after the single space that follows the key; the line's own ends are trimmed.
    expect(await c.call('APPEND s  ! ')).toBe('VALUE hello-world !');
  });

  it('APPEND refuses to grow a value past the limit', async () => {
    const c = await client({ 'storage.max_value_bytes': '8' });
    expect(await c.call('SET s 12345678')).toBe('OK');
    expect(await c.call('APPEND s 9')).toBe('ERROR value too large (9 bytes, the limit is 8)');
    expect(await c.call('GET s')).toBe('VALUE 12345678');
  });

  it('MGET and MSET', async () => {
    const c = await client();
    expect(await c.call('MGET a b')).toBe('NOT_FOUND');
    expect(await c.call('MSET a 1 b 2 c 3')).toBe('OK');
    c.send('MGET a nope c\r\n');
    expect(await c.lines(4)).toEqual(['VALUES 2', 'a 1', 'nope NOT_FOUND', 'c 3']);
    expect(await c.call('MSET a 1 b')).toBe('ERROR MSET command requires an even number of arguments (key-value pairs)');
  });

  it('EXISTS, SCAN and DBSIZE never count deleted keys', async () => {
    const c = await client();
    await c.call('MSET user:2 b user:1 a order:1 x user:3 c');
    await c.call('DEL user:3');
    expect(await c.call('EXISTS user:1 user:3 user:2 zzz')).toBe('EXISTS 2');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 3');
    c.send('SCAN user:\r\n');
    expect(await c.lines(3)).toEqual(['KEYS 2', 'user:1', 'user:2']);
    c.send('SCAN\r\n');
    expect(await c.lines(4)).toEqual(['KEYS 3', 'order:1', 'user:1', 'user:2']);
    expect(await c.call('SCAN nothing')).toBe('KEYS 0');
  });

  it('PING, ECHO and VERSION', async () => {
    const c = await client();
    expect(await c.call('PING')).toBe('PONG');
    expect(await c.call('PING are you there')).toBe('PONG are you there');
    expect(await c.call('ECHO hello  world')).toBe('ECHO hello  world');
    expect(await c.call('VERSION')).toMatch(/^VERSION \d+\.\d+\.\d+/);
  });

  it('STATS and INFO: a header, name:value lines, END', async () => {
    const c = await client();
    await c.call('SET a 1');
    await c.call('GET a');
    await c.call('GET b');
    for (const word of ['STATS', 'INFO']) {
      const lines = await c.stats(word);
      expect(lines[0]).toBe(word);
      const stats: Record<string, string> = Object.fromEntries(
        lines.slice(1).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
      );
      expect(stats).toMatchObject(word === 'STATS' ? { node_id: 'test-node', get_hits: '1', get_misses: '1', keys: '1', connections_current: '1' } : { node_id: 'test-node', db_keys: '1', connections_current: '1' });
      // Values have no spaces, except the reference's `uptime` (`0d 0h 1m 5s`).
      for (const l of lines.slice(1)) expect(l).toMatch(l.startsWith('uptime:') ? /^uptime:\d+d \d+h \d+m \d+s$/ : /^[a-z_]+:\S*$/);
      // Under 1 KiB (DESIGN.md section 2), with room for counters to grow by 5 digits each.
      expect(lines.join('\r\n').length + 5 * lines.length).toBeLessThan(1024);
    }
  });

  it('STATS sections: storage, replication, anti-entropy, each under 1 KiB; all of them at once', async () => {
    const c = await client();
    const names = (lines: string[]): string[] => lines.slice(1).map((l) => l.slice(0, l.indexOf(':')));
    const all = names(await c.stats('STATS all'));
    for (const [section, first] of [['storage', 'storage_fsync:periodic'], ['replication', 'replication_enabled:0'], ['antientropy', 'anti_entropy_enabled:1']] as const) {
      const lines = await c.stats(`STATS ${section}`);
      expect(lines[0]).toBe('STATS');
      expect(lines[1]).toBe(first);
      expect(lines.join('\r\n').length).toBeLessThan(1024);
      // STATS all holds every section.
      for (const name of names(lines)) expect(all).toContain(name);
    }
    expect(all).toContain('node_id');
    expect(all).toContain('get_commands');
    expect(await c.call('STATS nonsense')).toBe('ERROR STATS command requires at most a section (general, storage, replication, antientropy, peers, all)');
  });

  it('TRUNCATE and FLUSHDB delete everything', async () => {
    const c = await client();
    await c.call('MSET a 1 b 2');
    expect(await c.call('TRUNCATE')).toBe('OK');
    expect(await c.call('DBSIZE')).toBe('DBSIZE 0');
    expect(await c.call('GET a')).toBe('NOT_FOUND');
    await c.call('SET c 3');
    expect(await c.call('FLUSHDB')).toBe('OK');
    expect(await c.call('SCAN')).toBe('KEYS 0');
  });

  it('HASH answers the Merkle root, which follows every write', async () => {
    const c = await client();
    const empty = await c.call('HASH');
    expect(empty).toMatch(/^HASH [0-9a-f]{32}$/);
    await c.call('SET a 1');
    const one = await c.call('HASH');
    expect(one).not.toBe(empty);
    await c.call('SET a 2');
    expect(await c.call('HASH')).not.toBe(one);
    expect(await c.call('HASH a b')).toBe('ERROR HASH command requires at most one prefix');
  });

  it('QUIT closes the connection after earlier replies', async () => {
    const c = await client();
    c.send('SET q 1\r\nQUIT\r\nGET q\r\n');
    expect(await c.lines(1)).toEqual(['OK']);
    await c.waitClosed();
    expect(c.rest).toBe('');
  });

  it('errors leave the connection usable', async () => {
    const c = await client();
    expect(await c.call('NOPE')).toBe('ERROR Unknown command: NOPE');
    expect(await c.call('')).toBe('ERROR empty command');
    expect(await c.call('GET')).toBe('ERROR GET command requires exactly one key');
    expect(await c.call('SET k')).toBe('ERROR SET command requires a key and a value');
    expect(await c.call('PING')).toBe('PONG');
  });
});

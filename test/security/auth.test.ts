import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Authenticator, isLoopbackAddress } from '../../src/security/auth.js';
import { LineClient, startTestNode } from '../helpers.js';

const USERS = JSON.stringify({
  reader: { password: 'r-secret', role: 'read' },
  writer: { password: 'w-secret', role: 'write' },
  boss: { password: 'b-secret', role: 'admin' },
});

async function client(flags: Record<string, string>): Promise<LineClient> {
  const node = await startTestNode(flags);
  return LineClient.connect(node.address.port);
}

describe('client authentication', () => {
  it('with [security] password, nothing but PING and QUIT runs before AUTH; AUTH <password> grants everything', async () => {
    const c = await client({ 'security.password': 'hunter2' });
    expect(await c.call('GET k')).toBe('ERROR NOAUTH Authentication required');
    expect(await c.call('SET k v')).toBe('ERROR NOAUTH Authentication required');
    // Refused before its arguments are looked at: a bad request says only that.
    expect(await c.call('GET')).toBe('ERROR NOAUTH Authentication required');
    expect(await c.call('PING')).toBe('PONG');
    expect(await c.call('AUTH wrong')).toBe('ERROR invalid password');
    expect(await c.call('GET k')).toBe('ERROR NOAUTH Authentication required');
    expect(await c.call('AUTH hunter2')).toBe('OK');
    expect(await c.call('SET k v')).toBe('OK');
    expect(await c.call('GET k')).toBe('VALUE v');
    expect(await c.call('TRUNCATE')).toBe('OK');
    const stats = await c.stats();
    expect(stats).toContain('auth_required:1');
    expect(stats).toContain('auth_failures:1');
  });

  it('named users get their role: read, write or admin', async () => {
    const node = await startTestNode({ 'security.users': USERS });
    const [r, w, a] = await Promise.all([0, 1, 2].map(() => LineClient.connect(node.address.port)));
    expect(await r?.call('AUTH reader r-secret')).toBe('OK');
    expect(await w?.call('AUTH writer w-secret')).toBe('OK');
    expect(await a?.call('AUTH boss b-secret')).toBe('OK');
    expect(await w?.call('SET k v')).toBe('OK');
    expect(await r?.call('GET k')).toBe('VALUE v');
    expect(await r?.call('SCAN')).toBe('KEYS 1');
    expect(await r?.lines(1)).toEqual(['k']);
    expect(await r?.call('SET k x')).toBe('ERROR NOPERM user reader (role read) may not run SET');
    expect(await r?.call('DEL k')).toBe('ERROR NOPERM user reader (role read) may not run DEL');
    expect(await w?.call('INC n')).toBe('VALUE 1');
    expect(await w?.call('FLUSHDB')).toBe('ERROR NOPERM user writer (role write) may not run FLUSHDB');
    expect(await w?.call('SYNC 127.0.0.1 1')).toBe('ERROR NOPERM user writer (role write) may not run SYNC');
    expect(await a?.call('FLUSHDB')).toBe('OK');
    expect(await r?.call('GET k')).toBe('NOT_FOUND');
    // A user's password is not another's, and the one-word form needs [security] password.
    expect(await r?.call('AUTH writer r-secret')).toBe('ERROR invalid password');
    expect(await r?.call('AUTH nobody r-secret')).toBe('ERROR invalid password');
    expect(await r?.call('AUTH w-secret')).toBe('ERROR invalid password');
    // A failed AUTH leaves the connection's user as it was.
    expect(await r?.call('GET k')).toBe('NOT_FOUND');
    // Switching users.
    expect(await r?.call('AUTH boss b-secret')).toBe('OK');
    expect(await r?.call('SET k by-boss')).toBe('OK');
  });

  it('answers failures late and one at a time, across connections, so guesses cannot be pipelined', async () => {
    const node = await startTestNode({ 'security.password': 'right' });
    const c = await LineClient.connect(node.address.port);
    const d = await LineClient.connect(node.address.port);
    const t0 = Date.now();
    c.send('AUTH a\r\nAUTH b\r\nAUTH c\r\nAUTH right\r\nGET k\r\n');
    d.send('AUTH d\r\n');
    expect(await c.lines(5, 10_000)).toEqual(['ERROR invalid password', 'ERROR invalid password', 'ERROR invalid password', 'OK', 'NOT_FOUND']);
    expect(await d.lines(1, 10_000)).toEqual(['ERROR invalid password']);
    // Four failures, at least 200 ms apart (the first waits 200 ms too).
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4 * 200 - 20);
  });

  it('AUTH on a node without passwords is an error; without passwords every command runs', async () => {
    const c = await client({});
    expect(await c.call('AUTH x')).toBe('ERROR AUTH called without any password configured');
    expect(await c.call('SET k v')).toBe('OK');
    expect(await c.call('TRUNCATE')).toBe('OK');
    expect(await c.stats()).toContain('auth_required:0');
  });

  it('admin_commands = false refuses TRUNCATE, FLUSHDB and SYNC to everyone, admins included', async () => {
    const cases: Record<string, string>[] = [{}, { 'security.password': 'pw' }];
    for (const flags of cases) {
      const c = await client({ ...flags, 'security.admin_commands': 'false' });
      if ('security.password' in flags) expect(await c.call('AUTH pw')).toBe('OK');
      expect(await c.call('SET k v')).toBe('OK');
      expect(await c.call('TRUNCATE')).toBe('ERROR TRUNCATE is disabled on this node (security.admin_commands = false)');
      expect(await c.call('FLUSHDB')).toBe('ERROR FLUSHDB is disabled on this node (security.admin_commands = false)');
      expect(await c.call('SYNC 127.0.0.1 1')).toBe('ERROR SYNC is disabled on this node (security.admin_commands = false)');
      expect(await c.call('GET k')).toBe('VALUE v');
    }
  });

  it('never logs a password, even at trace level', async () => {
    let logged = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logged += chunk.toString();
        done();
      },
    });
    const node = await startTestNode({ 'security.password': 'pw-in-config', 'security.users': USERS }, pino({ level: 'trace' }, sink));
    const c = await LineClient.connect(node.address.port);
    expect(await c.call('AUTH guess-one')).toBe('ERROR invalid password');
    expect(await c.call('AUTH boss guess-two')).toBe('ERROR invalid password');
    expect(await c.call('AUTH boss b-secret')).toBe('OK');
    await node.stop();
    expect(logged).not.toBe('');
    for (const secret of ['pw-in-config', 'guess-one', 'guess-two', 'b-secret', 'r-secret']) expect(logged).not.toContain(secret);
  });

  it('compares passwords of any length, and unknown users, without error', () => {
    const auth = new Authenticator({ password: 'p', users: { u: { password: 'longer password', role: 'read' } } });
    expect(auth.check('default', Buffer.from('p'))).toBe('admin');
    expect(auth.check('u', Buffer.from('longer password'))).toBe('read');
    expect(auth.check('u', Buffer.from('x'.repeat(10_000)))).toBeUndefined();
    expect(auth.check('nobody', Buffer.alloc(0))).toBeUndefined();
  });

  it('tells loopback addresses (no warning without a password) from the others', () => {
    for (const a of ['127.0.0.1', '127.0.0.2', '::1', '::ffff:127.0.0.1', 'localhost']) expect(isLoopbackAddress(a)).toBe(true);
    for (const a of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', '::ffff:10.0.0.1']) expect(isLoopbackAddress(a)).toBe(false);
  });
});

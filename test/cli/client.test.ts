import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { makeCerts } from '../certs.js';
import { startTestNode, tempDir } from '../helpers.js';
import { CLI, runCli } from '../process.js';

/** Runs `merkle-kv cli ...args` with `input` on stdin. */
function cli(args: string[], input = ''): ReturnType<typeof runCli> {
  return runCli(['cli', ...args], {}, input);
}

describe('merkle-kv cli', () => {
  it('runs one command, prints its reply readably, and exits 1 on ERROR', async () => {
    const node = await startTestNode();
    const p = ['-p', String(node.address.port)];
    expect(await cli([...p, 'SET', 'user:1', 'alice smith'])).toMatchObject({ code: 0, stdout: 'OK\n' });
    expect(await cli([...p, 'GET', 'user:1'])).toMatchObject({ code: 0, stdout: '"alice smith"\n' });
    expect(await cli([...p, 'GET', 'nobody'])).toMatchObject({ code: 0, stdout: '(nil)\n' });
    expect(await cli([...p, '--raw', 'GET', 'user:1'])).toMatchObject({ code: 0, stdout: 'VALUE alice smith\n' });
    expect(await cli([...p, 'MGET', 'user:1', 'nobody'])).toMatchObject({ code: 0, stdout: '1) user:1 => "alice smith"\n2) nobody => (nil)\n' });
    expect(await cli([...p, 'INC', 'user:1'])).toMatchObject({ code: 1, stdout: "(error) Value for key 'user:1' is not a valid number\n" });
    // Options after the command word are the command's.
    const sync = await cli([...p, 'SYNC', '127.0.0.1', '1', '--verify']);
    expect(sync.code).toBe(1);
    expect(sync.stdout).toMatch(/^\(error\) sync with 127\.0\.0\.1:1 failed/);
  });

  it('fills an empty node with SYNC --full, showing the stream\'s progress on stderr while it runs', async () => {
    const full = await startTestNode({ node_id: 'full' });
    const value = Buffer.alloc(100, 'v');
    for (let i = 0; i < 200_000; i++) void full.store.set(Buffer.from(`key:${i}`), value);
    await full.store.settled();
    const empty = await startTestNode({ node_id: 'empty' });
    const r = await cli(['-p', String(empty.address.port), 'SYNC', '127.0.0.1', String(full.address.port), '--full']);
    expect(r).toMatchObject({ code: 0, stdout: 'OK\n' });
    expect(empty.store.size).toBe(200_000);
    expect(empty.store.rootHash()).toEqual(full.store.rootHash());
    // At least one progress line (the copy of 200,000 keys outlasts the CLI's half-second poll).
    expect(r.stderr).toMatch(/^\rsync: \d+(\.\d)?% \d+ keys \d+\.\d MB \d+ keys\/s/);
  });

  it('exits 2 when it cannot connect or AUTH is refused, and authenticates with --password', async () => {
    const closed = await cli(['-p', '1', 'PING']);
    expect(closed.code).toBe(2);
    expect(closed.stderr).toMatch(/cannot connect to 127\.0\.0\.1:1/);
    expect((await cli(['-p', '0', 'PING'])).code).toBe(2);
    const node = await startTestNode({ 'security.password': 'sesame' });
    const p = ['-p', String(node.address.port)];
    expect(await cli([...p, 'GET', 'k'])).toMatchObject({ code: 1, stdout: '(error) NOAUTH Authentication required\n' });
    const wrong = await cli([...p, '--password', 'nope', 'GET', 'k']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/AUTH refused: ERROR invalid password/);
    expect(await cli([...p, '-a', 'sesame', 'SET', 'k', 'v'])).toMatchObject({ code: 0, stdout: 'OK\n' });
  });

  it('talks TLS to a node that serves it, trusting --cacert', async () => {
    const certs = makeCerts();
    const node = await startTestNode({ 'network.tls.enabled': 'true', 'network.tls.cert_file': certs.serverCert, 'network.tls.key_file': certs.serverKey });
    const p = ['-p', String(node.address.port)];
    expect(await cli([...p, '--tls', '--cacert', certs.caCert, 'PING'])).toMatchObject({ code: 0, stdout: 'PONG\n' });
    // Without the CA the certificate is not trusted; without TLS the node hangs up.
    expect((await cli([...p, '--tls', 'PING'])).code).toBe(2);
    expect((await cli([...p, 'PING'])).code).toBe(2);
  });

  it('reads requests from stdin when it is not a terminal, and exits 1 if any was an ERROR', async () => {
    const node = await startTestNode();
    const p = ['-p', String(node.address.port)];
    const ok = await cli(p, 'SET a 1\nSADD s x y\n\nSMEMBERS s\nINFO\nquit\nGET a\n');
    expect(ok.code).toBe(0);
    const lines = ok.stdout.trim().split('\n');
    expect(lines.slice(0, 4)).toEqual(['OK', '(integer) 2', '1) "x"', '2) "y"']);
    expect(lines[4]).toMatch(/^version:/);
    // `quit` ends the session: GET a never ran.
    expect(lines).not.toContain('"1"');
    const bad = await cli(p, 'BOGUS\nGET a\n');
    expect(bad).toMatchObject({ code: 1, stdout: '(error) Unknown command: BOGUS\n"1"\n' });
  });

  it('offers a prompt with history on a terminal', async () => {
    if (spawnSync('sh', ['-c', 'command -v script']).status !== 0) throw new Error('util-linux script(1) is needed to drive a pseudo-terminal');
    const node = await startTestNode({ 'security.password': 'sesame' });
    const history = join(tempDir(), 'history');
    writeFileSync(history, 'GET older\n');
    const command = [process.execPath, CLI, 'cli', '-p', String(node.address.port), '--history', history].map((w) => `'${w}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
    onTestFinished(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    const typed = async (text: string, expected: RegExp): Promise<void> => {
      child.stdin.write(text);
      for (let i = 0; i < 100 && !expected.test(out); i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(expected);
    };
    await typed('', new RegExp(`127\\.0\\.0\\.1:${node.address.port}> `));
    await typed('AUTH sesame\r', /OK/);
    await typed('SET k v\r', /OK[\s\S]*OK/);
    await typed('GET k\r', /"v"/);
    await typed('quit\r', /quit/);
    // script(1) ends when its input does.
    child.stdin.end();
    expect(child.exitCode ?? (await new Promise((resolve) => child.on('exit', resolve)))).toBe(0);
    // Newest last; AUTH (and its password) is not kept.
    expect(readFileSync(history, 'utf8')).toBe('GET older\nSET k v\nGET k\n');
  });
});

describe('merkle-kv check-config', () => {
  it('prints the effective configuration with secrets masked, or exits 2 saying why', async () => {
    const dir = tempDir();
    const file = join(dir, 'node.toml');
    writeFileSync(file, 'node_id = "n1"\ncluster_secret = "s3cret"\n[security]\npassword = "hunter2"\n[security.users.alice]\npassword = "pw"\nrole = "read"\n[mqtt]\npassword = ""\n');
    const ok = await runCli(['check-config', file], { MERKLE_KV_NETWORK_BIND_PORT: '7999' });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/valid/);
    expect(ok.stdout).toMatch(/^bind_port = 7999$/m);
    expect(ok.stdout).toMatch(/^cluster_secret = "\*{8}"$/m);
    expect(ok.stdout).toMatch(/^password = "\*{8}"$/m);
    expect(ok.stdout).not.toMatch(/s3cret|hunter2|"pw"/);
    // The storage path defaults from node_id, as a node would use it.
    expect(ok.stdout).toMatch(/^path = "\.\/data\/n1"$/m);
    writeFileSync(file, 'node_id = "n1"\n[network]\nbind_port = 99999\n');
    const bad = await runCli(['check-config', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/network\.bind_port must be in 0\.\.65535/);
    expect(bad.stdout).toBe('');
    expect((await runCli(['check-config', join(dir, 'missing.toml')])).code).toBe(2);
    expect(existsSync(join(dir, 'data'))).toBe(false);
  });
});

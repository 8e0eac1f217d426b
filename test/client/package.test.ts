import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, onTestFinished } from 'vitest';
import { startTestNode, tempDir } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = join(ROOT, 'dist/client/index.js');

/** Runs `node args` in `cwd` to its end. */
async function run(args: string[], cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  onTestFinished(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const code = await new Promise<number | null>((done) => child.on('close', done));
  return { code, stdout, stderr };
}

describe('the merkle-kv package', () => {
  if (!existsSync(ENTRY)) throw new Error('dist/client/index.js is missing: run `npm run build` (npm test does)');

  it("`import { createClient } from 'merkle-kv'` resolves through package.json exports to the client", async () => {
    const node = await startTestNode();
    const program = `
      import { createClient, ReplyError, TimeoutError, ConnectionError, MerkleKVError } from 'merkle-kv';
      const client = createClient({ port: ${node.address.port} });
      await client.connect();
      await client.set('greeting', 'hello from the package');
      const err = await client.incr('greeting').catch((e) => e);
      console.log(JSON.stringify([await client.get('greeting'), err instanceof ReplyError, err instanceof MerkleKVError, typeof TimeoutError, typeof ConnectionError]));
      await client.close();
      console.log(import.meta.resolve('merkle-kv'));`;
    // A package may import itself by its own name, through its exports (Node's self-reference).
    const r = await run(['--input-type=module', '-e', program], ROOT);
    expect(r.stderr).toBe('');
    const [result, resolved] = r.stdout.trim().split('\n');
    expect(JSON.parse(result as string)).toEqual(['hello from the package', true, true, 'function', 'function']);
    expect(fileURLToPath(resolved as string)).toBe(ENTRY);
  });

  it('gives TypeScript its types: an application type-checks against dist/client/index.d.ts', async () => {
    // An application with merkle-kv in its node_modules (a link to this checkout), compiled by tsc.
    const app = tempDir();
    mkdirSync(join(app, 'node_modules/@types'), { recursive: true });
    symlinkSync(ROOT, join(app, 'node_modules/merkle-kv'), 'dir');
    symlinkSync(join(ROOT, 'node_modules/@types/node'), join(app, 'node_modules/@types/node'), 'dir');
    writeFileSync(join(app, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] }, files: ['app.ts'] }),
    );
    writeFileSync(
      join(app, 'app.ts'),
      `import { createClient, ReplyError, type MerkleKVClient, type ClientOptions } from 'merkle-kv';
const options: ClientOptions = { host: '127.0.0.1', port: 7878, tls: { ca: 'pem' }, user: 'u', password: 'p', timeout: 100, reconnect: { initialDelay: 10, maxDelay: 100 } };
const client: MerkleKVClient = createClient(options);
export async function main(): Promise<void> {
  await client.connect();
  const value: string | null = await client.get('k');
  const n: number = await client.incr('n', 2);
  const members: string[] = await client.smembers('s');
  const found: boolean = await client.sismember('s', 'm');
  const many: (string | null)[] = await client.mget('a', 'b');
  const stats: Record<string, string> = await client.stats('storage');
  const ttl: number | null = await client.ttl('k');
  const raw: string[] = await client.command('GET k');
  // @ts-expect-error GET may find nothing: its value is string | null
  const wrong: string = await client.get('k');
  // @ts-expect-error a number is no set of members
  await client.sadd('s', 1);
  client.on('error', (err) => err instanceof ReplyError);
  console.log(value, n, members, found, many, stats, ttl, raw, wrong);
  await client.close();
}
`,
    );
    const r = await run([join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], app);
    expect(r.stdout + r.stderr).toBe('');
    expect(r.code).toBe(0);
  }, 120_000); // tsc takes seconds, more on a busy machine

  it('keeps the client apart from the server: no import of server, store or config code, no cycles', () => {
    // Every module the client reaches, following relative imports from its entry point.
    const allowedOutside = new Set(['src/protocol/replies.ts', 'src/errors.ts', 'src/rules.ts']);
    const graph = new Map<string, string[]>();
    const visit = (file: string): void => {
      if (graph.has(file)) return;
      const text = readFileSync(join(ROOT, file), 'utf8');
      const deps: string[] = [];
      graph.set(file, deps);
      for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'/gms)) {
        const spec = m[1] as string;
        if (!spec.startsWith('.')) {
          // Packages would be dependencies of every application that uses the client.
          expect(spec, `${file} imports ${spec}`).toMatch(/^node:/);
          continue;
        }
        const dep = relative(ROOT, resolve(ROOT, dirname(file), spec)).replace(/\.js$/, '.ts');
        expect(dep.startsWith('src/client/') || allowedOutside.has(dep), `${file} imports ${dep}`).toBe(true);
        deps.push(dep);
        visit(dep);
      }
    };
    visit('src/client/index.ts');
    expect([...graph.keys()].filter((f) => f.startsWith('src/client/')).length).toBeGreaterThanOrEqual(8);
    // Depth-first search: a module met again while still on the path closes a cycle.
    const onPath = new Set<string>();
    const done = new Set<string>();
    const cycleFrom = (file: string): string | undefined => {
      if (onPath.has(file)) return file;
      if (done.has(file)) return undefined;
      onPath.add(file);
      for (const dep of graph.get(file) ?? []) {
        const found = cycleFrom(dep);
        if (found !== undefined) return `${file} -> ${found}`;
      }
      onPath.delete(file);
      done.add(file);
      return undefined;
    };
    expect(cycleFrom('src/client/index.ts')).toBeUndefined();
  });
});

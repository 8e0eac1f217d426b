// Helpers shared by scripts/bench.mjs and scripts/bench-cluster.mjs.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));

export const hasTaskset = (() => {
  try {
    execFileSync('taskset', ['-c', '0', 'true']);
    return true;
  } catch {
    return false;
  }
})();

/** [command, args] running `cmd` on `cpu` when taskset is there. */
export const pinned = (cpu, cmd, cmdArgs) => (hasTaskset ? ['taskset', ['-c', cpu, cmd, ...cmdArgs]] : [cmd, cmdArgs]);

export const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** A port free right now on 127.0.0.1 (a benchmark script may race for it; tests never do this). */
export function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export async function waitReady(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((resolve) => {
      const s = connect({ port, host: '127.0.0.1' }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server on port ${port} did not come up`);
}

/** Runs scripts/loadgen.mjs with `cfg` pinned to `cpu`; resolves with its JSON result. */
export function runLoad(cfg, cpu) {
  const [c, a] = pinned(cpu, process.execPath, [join(root, 'scripts/loadgen.mjs'), JSON.stringify(cfg)]);
  return new Promise((resolve, reject) => {
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`loadgen exited ${code}`))));
  });
}

/** Starts a child process; `stop()` sends SIGTERM, then SIGKILL after 5 s. */
export function startProcess(cpu, cmd, cmdArgs, env = {}) {
  const [c, a] = pinned(cpu, cmd, cmdArgs);
  const child = spawn(c, a, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, ...env } });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    child,
    async stop() {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

/** CPU seconds (user + system, all threads) that process `pid` has used, from /proc (Linux). */
export function cpuSecondsOf(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

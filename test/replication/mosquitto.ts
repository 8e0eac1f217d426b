import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import type { Certs } from '../certs.js';
import { tempDir } from '../helpers.js';

/** Whether the mosquitto binary is installed (`.ci/run` installs it; with CI=true its tests must run). */
export const hasMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto']).status === 0;

/** Optional hardening of the test broker. */
export interface MosquittoOptions {
  /** Only these users (name -> password) may connect. */
  readonly users?: Readonly<Record<string, string>>;
  /** Serve TLS with the server certificate (clients connect with mqtts://). */
  readonly tls?: Certs;
  /** More configuration lines (a bridge, an ACL); `$DIR` in them is the broker's own directory. */
  readonly extra?: readonly string[];
}

export interface Mosquitto {
  readonly port: number;
  /** mqtt:// or, with TLS, mqtts:// */
  readonly url: string;
  /** Stops the broker (SIGTERM, then SIGKILL; with `kill`, SIGKILL at once: what it had not saved is lost). */
  stop(kill?: boolean): Promise<void>;
  /** Starts it again on the same port with the same persistence directory. */
  restart(): Promise<void>;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' }, () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

/**
 * A Mosquitto of the test's own on 127.0.0.1. Mosquitto cannot listen on port 0 and tell us the port,
 * so it tries random high ports until one binds (a taken port makes it exit at once).
 */
export async function startMosquitto(opts: MosquittoOptions = {}): Promise<Mosquitto> {
  const dir = tempDir();
  const passwords = join(dir, 'passwords');
  for (const [i, [user, password]] of Object.entries(opts.users ?? {}).entries()) {
    execFileSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', passwords, user, password], { stdio: 'ignore' });
  }
  const access = opts.users === undefined ? ['allow_anonymous true'] : ['allow_anonymous false', `password_file ${passwords}`];
  const tls = opts.tls === undefined ? [] : [`certfile ${opts.tls.serverCert}`, `keyfile ${opts.tls.serverKey}`];
  let child: ChildProcess | undefined;
  let port = 0;
  const launch = async (): Promise<boolean> => {
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        ...tls,
        ...access,
        'set_tcp_nodelay true',
        'persistence true',
        `persistence_location ${dir}/`,
        // The default (1000) silently drops messages queued for an offline client beyond it.
        'max_queued_messages 100000',
        ...(process.getuid?.() === 0 ? ['user root'] : []),
        'log_type error',
        ...(opts.extra ?? []).map((l) => l.replaceAll('$DIR', dir)),
      ].join('\n') + '\n',
    );
    const proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let exited = false;
    proc.once('exit', () => (exited = true));
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && !exited) {
      if (await canConnect(port)) {
        child = proc;
        return true;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    proc.kill('SIGKILL');
    return false;
  };
  for (let attempt = 0; attempt < 10 && child === undefined; attempt++) {
    port = 20_000 + Math.floor(Math.random() * 40_000);
    await launch();
  }
  if (child === undefined) throw new Error('could not start mosquitto');
  const stop = async (kill = false): Promise<void> => {
    const proc = child;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((r) => proc.once('exit', r));
    proc.kill(kill ? 'SIGKILL' : 'SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(timer);
  };
  onTestFinished(() => stop());
  return {
    port,
    url: `${opts.tls === undefined ? 'mqtt' : 'mqtts'}://127.0.0.1:${port}`,
    stop,
    async restart() {
      await stop();
      child = undefined;
      for (let i = 0; i < 50 && child === undefined; i++) {
        if (!(await launch())) await new Promise((r) => setTimeout(r, 100));
      }
      if (child === undefined) throw new Error(`could not restart mosquitto on port ${port}`);
    },
  };
}

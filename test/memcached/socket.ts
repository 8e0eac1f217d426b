import { connect, type Socket } from 'node:net';
import { onTestFinished } from 'vitest';

/** A raw memcached-protocol connection for tests: send bytes, read until the text so far matches. */
export interface McSocket {
  readonly socket: Socket;
  readonly closed: Promise<unknown>;
  send(b: string | Buffer): void;
  /** Waits (up to `timeoutMs`) until what came since the last call matches `re`; returns it all and starts afresh. */
  until(re: RegExp, timeoutMs?: number): Promise<string>;
  /** What came since the last `until`, without waiting. */
  pending(): string;
}

export async function mc(port: number): Promise<McSocket> {
  const socket = connect({ port, host: '127.0.0.1', noDelay: true });
  const closed = new Promise((resolve) => socket.once('close', resolve));
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  onTestFinished(() => {
    socket.destroy();
  });
  let got = '';
  socket.on('data', (b: Buffer) => (got += b.toString('latin1')));
  return {
    socket,
    closed,
    send: (b) => socket.write(typeof b === 'string' ? Buffer.from(b, 'latin1') : b),
    async until(re, timeoutMs = 2000) {
      for (const deadline = Date.now() + timeoutMs; !re.test(got) && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 10));
      const text = got;
      got = '';
      return text;
    },
    pending: () => got,
  };
}

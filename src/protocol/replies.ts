import { ProtocolError } from '../errors.js';

/**
 * Reading the server's replies, for clients (`merkle-kv cli`): how many lines make one reply depends
 * on the request (DESIGN.md section 2), so the reader is told each request as it is sent, and hands
 * back complete replies in order. It knows no socket: feed it chunks.
 *
 * - `ERROR ...` is always one line;
 * - `KEYS <n>` (SCAN) and `MEMBERS <n>` (SMEMBERS) are followed by n lines;
 * - `VALUES <found>` (MGET) is followed by one line per key asked for;
 * - STATS, INFO and CLIENT LIST run up to an `END` line (included);
 * - everything else is one line.
 */
export class ReplyReader {
  private readonly expected: Frame[] = [];
  private readonly done: string[][] = [];
  private current: string[] = [];
  private tail = '';

  constructor(private readonly maxLineBytes = 64 * 1024 * 1024) {}

  /** A request was sent: its reply comes after those of the requests before it. */
  expect(request: string): void {
    this.expected.push(frameOf(request));
  }

  /** Requests whose replies are not complete yet. */
  get pending(): number {
    return this.expected.length;
  }

  /** Feeds bytes from the server; returns the replies they completed, each as its lines. */
  push(chunk: string): string[][] {
    this.tail += chunk;
    let start = 0;
    for (let nl = this.tail.indexOf('\n'); nl !== -1; nl = this.tail.indexOf('\n', start)) {
      const line = this.tail.slice(start, nl > start && this.tail[nl - 1] === '\r' ? nl - 1 : nl);
      start = nl + 1;
      this.line(line);
    }
    this.tail = this.tail.slice(start);
    if (this.tail.length > this.maxLineBytes) throw new ProtocolError(`reply line longer than ${this.maxLineBytes} bytes`);
    return this.done.splice(0);
  }

  private line(line: string): void {
    const frame = this.expected[0];
    if (frame === undefined) throw new ProtocolError(`reply to no request: ${line.slice(0, 80)}`);
    this.current.push(line);
    if (!complete(frame, this.current)) return;
    this.expected.shift();
    this.done.push(this.current);
    this.current = [];
  }
}

type Frame = { readonly kind: 'line' } | { readonly kind: 'block' } | { readonly kind: 'mget'; readonly keys: number };

function frameOf(request: string): Frame {
  const words = request.trim().split(/[ \t]+/);
  const word = (words[0] ?? '').toUpperCase();
  if (word === 'STATS' || word === 'INFO' || (word === 'CLIENT' && (words[1] ?? '').toUpperCase() === 'LIST')) return { kind: 'block' };
  if (word === 'MGET') return { kind: 'mget', keys: words.length - 1 };
  return { kind: 'line' };
}

function complete(frame: Frame, lines: readonly string[]): boolean {
  const first = lines[0] as string;
  if (first.startsWith('ERROR')) return true;
  if (frame.kind === 'block') return lines[lines.length - 1] === 'END';
  const counted = /^(KEYS|MEMBERS) (\d+)$/.exec(first);
  if (counted !== null) return lines.length === 1 + Number(counted[2]);
  if (frame.kind === 'mget' && /^VALUES \d+$/.test(first)) return lines.length === 1 + frame.keys;
  return true;
}

import type { Logger } from 'pino';
import type { StreamProgress } from './stream.js';

/** A progress line goes to the log at most this often while a stream runs. */
const LOG_EVERY_MS = 5000;

interface Watched {
  readonly peer: string;
  readonly started: number;
  lastLog: number;
  progress: Readonly<StreamProgress> | undefined;
}

/**
 * Keeps an eye on the streams that fill this node from its peers (stream.ts): a log line every few
 * seconds while one runs (keys, bytes, keys/s, percent), and the figures STATS and the metrics show.
 */
export class StreamWatch {
  /** Records streamed in, and bytes of frames, over all streams so far. */
  keys = 0;
  bytes = 0;
  private readonly active = new Set<Watched>();

  constructor(private readonly logger: Logger) {}

  /**
   * An exchange with `peer` begins: `onFrame` is what it calls after each streamed frame, `end` what it
   * calls when it is over (its stream, if it had one, with it).
   */
  begin(peer: string): { onFrame: (p: Readonly<StreamProgress>) => void; end: () => void } {
    const w: Watched = { peer, started: Date.now(), lastLog: Date.now(), progress: undefined };
    this.active.add(w);
    const onFrame = (p: Readonly<StreamProgress>): void => {
      this.keys += p.received - (w.progress?.received ?? 0);
      this.bytes += p.bytes - (w.progress?.bytes ?? 0);
      // The exchange keeps updating one object: keep a copy of what this frame brought.
      w.progress = { ...p };
      const now = Date.now();
      if (now - w.lastLog < LOG_EVERY_MS) return;
      w.lastLog = now;
      this.logger.info({ peer, ...progressOf(w, now) }, 'anti-entropy: streaming');
    };
    const end = (): void => {
      this.active.delete(w);
      if (w.progress !== undefined) this.logger.info({ peer, ...progressOf(w, Date.now()) }, 'anti-entropy: stream done');
    };
    return { onFrame, end };
  }

  /**
   * Streams running; the records and bytes streamed in since start; the records and rate of the
   * streams running now, and the progress of the one furthest behind (percent; 100 with none).
   */
  figures(): { running: number; keys: number; bytes: number; runningKeys: number; runningBytes: number; keysPerSecond: number; percent: number } {
    let percent = 100;
    let rate = 0;
    let running = 0;
    let keys = 0;
    let bytes = 0;
    const now = Date.now();
    for (const w of this.active) {
      if (w.progress === undefined) continue;
      running++;
      const f = progressOf(w, now);
      percent = Math.min(percent, f.percent);
      rate += f.keysPerSecond;
      keys += f.keys;
      bytes += f.bytes;
    }
    return { running, keys: this.keys, bytes: this.bytes, runningKeys: keys, runningBytes: bytes, keysPerSecond: rate, percent };
  }

  /** The figures as STATS shows them. */
  statsLines(): string[] {
    const f = this.figures();
    return [
      `anti_entropy_streams_active:${f.running}`,
      `anti_entropy_stream_keys:${f.keys}`,
      `anti_entropy_stream_bytes:${f.bytes}`,
      `anti_entropy_stream_running_keys:${f.runningKeys}`,
      `anti_entropy_stream_running_bytes:${f.runningBytes}`,
      `anti_entropy_stream_keys_per_second:${f.keysPerSecond}`,
      `anti_entropy_stream_percent:${f.percent}`,
    ];
  }
}

function progressOf(w: Watched, now: number): { keys: number; bytes: number; keysPerSecond: number; percent: number } {
  const p = w.progress;
  const seconds = Math.max((now - w.started) / 1000, 0.001);
  const keys = p?.received ?? 0;
  return { keys, bytes: p?.bytes ?? 0, keysPerSecond: Math.round(keys / seconds), percent: Math.floor((p?.done ?? 0) * 1000) / 10 };
}

import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';
import sonicBoom from 'sonic-boom';
import type { Config } from './config/schema.js';

export interface LogHandle {
  readonly logger: Logger;
  /** Writes out what is buffered and closes the log; gives up after `timeoutMs` (a reader may never come). */
  close(timeoutMs?: number): Promise<void>;
}

/**
 * pino on an asynchronous SonicBoom destination with a bounded buffer: when stderr is a pipe that
 * nobody reads, log lines are dropped once 1 MiB is waiting, and the node keeps serving.
 */
export function createLogger(cfg: Config['logging'], base: Record<string, unknown>): LogHandle {
  // SonicBoom directly, not pino.destination(): that one registers an exit hook calling flushSync(),
  // which blocks forever on a full pipe and turns a clean shutdown into a hang.
  const dest = new sonicBoom.SonicBoom({
    dest: cfg.file_path === '' ? 2 : cfg.file_path,
    sync: false,
    mkdir: true,
    maxLength: 1024 * 1024,
  });
  dest.on('error', () => {});
  const prettyStream = cfg.format === 'text' ? pretty({ destination: dest, colorize: false, sync: false, singleLine: true }) : undefined;
  const stream: DestinationStream = prettyStream ?? dest;
  const logger = pino({ level: cfg.level, base }, stream);
  return {
    logger,
    close(timeoutMs = 1000) {
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        dest.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
        // Ending the pretty stream ends the destination after the lines still in the pipe between them.
        if (prettyStream !== undefined) prettyStream.end();
        else dest.end();
      });
    },
  };
}

#!/usr/bin/env node
import { Command, CommanderError, Option } from 'commander';
import { loadConfig } from './config/load.js';
import { FSYNC_MODES, LOG_LEVELS } from './config/schema.js';
import { ConfigError } from './errors.js';
import { createLogger } from './log.js';
import { startNode, type RunningNode } from './node.js';
import { VERSION } from './version.js';

/** Exit code of every start-up error the user can fix (DESIGN.md section 3). */
const EXIT_USAGE = 2;

const program = new Command()
  .name('merkle-kv')
  .description('A replicated key-value server: line protocol over TCP, LMDB storage.')
  .version(VERSION, '-V, --version')
  .option('-c, --config <file>', 'TOML configuration file')
  .option('--node-id <id>', 'node id, unique in the cluster (node_id)')
  .option('--bind <address>', 'address to listen on (network.bind_address)')
  .option('-p, --port <port>', 'client port (network.bind_port)')
  .option('--data-dir <path>', 'LMDB directory (storage.path)')
  .addOption(new Option('--fsync <mode>', 'when OK is sent: once the write is in the OS, or on disk (storage.fsync)').choices(FSYNC_MODES))
  .addOption(new Option('--log-level <level>', 'logging.level').choices(LOG_LEVELS))
  .addOption(new Option('--log-format <format>', 'logging.format').choices(['json', 'text']))
  .option('--log-file <path>', 'log to this file instead of stderr (logging.file_path)')
  .addHelpText(
    'after',
    '\nPrecedence: built-in defaults < config file < MERKLE_KV_* environment < flags.\n' +
      'Example: merkle-kv --config configs/node1.toml --port 7900',
  )
  .exitOverride();

interface Flags {
  config?: string;
  nodeId?: string;
  bind?: string;
  port?: string;
  dataDir?: string;
  fsync?: string;
  logLevel?: string;
  logFormat?: string;
  logFile?: string;
}

async function main(): Promise<void> {
  try {
    program.parse(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    }
    throw err;
  }
  const flags = program.opts<Flags>();
  let config;
  try {
    config = loadConfig({
      file: flags.config,
      env: process.env,
      flags: {
        node_id: flags.nodeId,
        'network.bind_address': flags.bind,
        'network.bind_port': flags.port,
        'storage.path': flags.dataDir,
        'storage.fsync': flags.fsync,
        'logging.level': flags.logLevel,
        'logging.format': flags.logFormat,
        'logging.file_path': flags.logFile,
      },
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`merkle-kv: ${err.message}\n`);
      process.exit(EXIT_USAGE);
    }
    throw err;
  }

  const log = createLogger(config.logging, { node: config.node_id });
  const { logger } = log;
  process.on('uncaughtException', (err) => {
    logger.fatal({ err }, 'uncaught exception');
    void log.close().finally(() => process.exit(1));
  });

  // Signals are handled from before the node starts: one that arrives while it starts up stops it as
  // soon as it is up, instead of killing it half-open.
  let node: RunningNode | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(1);
    }
    stopSignal = signal;
    if (node !== undefined) shutDown(node, signal);
  };
  const shutDown = (running: RunningNode, signal: NodeJS.Signals): void => {
    logger.info({ signal }, 'shutting down');
    running
      .stop()
      .then(() => log.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          void log.close().finally(() => process.exit(1));
        },
      );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  try {
    node = await startNode(config, logger);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    logger.fatal({ err }, 'cannot start');
    await log.close();
    process.stderr.write(`merkle-kv: cannot start: ${e.message}\n`);
    process.exit(e.code === 'EADDRINUSE' || e.code === 'EACCES' ? EXIT_USAGE : 1);
  }
  if (stopSignal !== undefined) shutDown(node, stopSignal);
}

await main();

import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { silent, tempDir } from '../helpers.js';

/** An in-process node whose configuration is `settings` as they are when it (re)loads; stopped when the test ends. */
export async function reloadableNode(settings: Record<string, string>): Promise<RunningNode> {
  const base = { 'network.bind_port': '0', 'mqtt.enabled': 'false', 'storage.path': join(tempDir(), 'db') };
  const load = (): Config => loadConfig({ flags: { ...base, ...settings } });
  const node = await startNode(load(), silent, { load });
  onTestFinished(() => node.stop());
  return node;
}

import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { startNode, type RunningNode } from '../../src/node.js';
import { silent, tempDir } from '../helpers.js';

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface ClusterNode {
  readonly id: string;
  readonly dataDir: string;
  node: RunningNode;
}

/** Starts an in-process node with replication on; stopped when the test finishes. */
export async function startReplicatedNode(id: string, flags: Record<string, string>, dataDir = join(tempDir(), id)): Promise<ClusterNode> {
  const config = loadConfig({
    flags: {
      node_id: id,
      'network.bind_port': '0',
      'storage.path': dataDir,
      'mqtt.enabled': 'true',
      'mqtt.keep_alive': '5',
      // Replication alone: a test of it must not pass because anti-entropy with the nodes found on the
      // broker repaired what it missed. Tests of discovery turn it on.
      'anti_entropy.discover_peers': 'false',
      ...flags,
    },
  });
  const node = await startNode(config, silent);
  const member: ClusterNode = { id, dataDir, node };
  onTestFinished(() => member.node.stop());
  return member;
}

/**
 * n nodes replicating through one broker: the embedded Aedes of the first node (`brokerUrl` undefined),
 * or an external broker at `brokerUrl`; `flagsOf(i)` adds settings for node i. Resolves once every node
 * is connected.
 */
export async function startCluster(
  n: number,
  brokerUrl?: string,
  flagsOf: (i: number) => Record<string, string> = () => ({}),
): Promise<ClusterNode[]> {
  const nodes: ClusterNode[] = [];
  let url = brokerUrl;
  if (url === undefined) {
    const first = await startReplicatedNode('node-1', { 'mqtt.embedded.enabled': 'true', 'mqtt.embedded.port': '0', ...flagsOf(0) });
    url = `mqtt://127.0.0.1:${first.node.broker?.address.port}`;
    nodes.push(first);
  }
  while (nodes.length < n) {
    nodes.push(await startReplicatedNode(`node-${nodes.length + 1}`, { 'mqtt.broker_address': url, ...flagsOf(nodes.length) }));
  }
  await waitFor('every node subscribed', () => nodes.every((m) => m.node.replicator?.stats.subscribed === true));
  return nodes;
}

/** The live value of `key` on a node, as a string. */
export function valueOn(m: ClusterNode, key: string): string | undefined {
  return m.node.store.readValue(Buffer.from(key)).value?.toString('utf8');
}

/** A TCP port free at the moment of asking, for configs that must name ports before nodes start. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

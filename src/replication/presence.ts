import { isValidNodeId } from '../rules.js';

/*
 * Presence (DESIGN.md section 5): each node keeps a retained status on `<prefix>/nodes/<node_id>`,
 * published when it connects to the broker, and a last will on the same topic, so the broker marks it
 * offline when its connection dies; a clean stop publishes offline itself. Readable in mosquitto_sub:
 *
 *   merkle-kv/nodes/node-1 {"v":1,"node":"node-1","state":"online","address":"127.0.0.1:7878","version":"0.1.0","at":1763800000000}
 *
 * With a cluster secret the status is signed like a replication message (signature.ts).
 */

export type NodeState = 'online' | 'offline';

export interface NodeStatus {
  readonly node: string;
  readonly state: NodeState;
  /** Where the other nodes reach its client port, `host:port` (`[network] advertise_address`). */
  readonly address: string;
  readonly version: string;
  /** When the node wrote the status (ms since the epoch). */
  readonly at: number;
}

export const STATUS_VERSION = 1;
/** Bounds on what a status from the broker may hold. */
const MAX_STATUS_BYTES = 1024;
const MAX_FIELD_CHARS = 300;
/** Nodes tracked at most: statuses beyond are ignored (the broker is not trusted with our memory). */
export const MAX_TRACKED_NODES = 1024;

export function statusTopic(prefix: string, node: string): string {
  return `${prefix}/nodes/${node}`;
}

export function encodeStatus(s: NodeStatus): Buffer {
  return Buffer.from(JSON.stringify({ v: STATUS_VERSION, node: s.node, state: s.state, address: s.address, version: s.version, at: s.at }));
}

/** A status as the broker delivered it, checked like client input; undefined if it is not one. */
export function decodeStatus(payload: Buffer): NodeStatus | undefined {
  if (payload.length === 0 || payload.length > MAX_STATUS_BYTES) return undefined;
  let o: unknown;
  try {
    o = JSON.parse(payload.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const { v, node, state, address, version, at } = o as Record<string, unknown>;
  if (v !== STATUS_VERSION || typeof node !== 'string' || !isValidNodeId(node)) return undefined;
  if (state !== 'online' && state !== 'offline') return undefined;
  if (!isShortText(address) || !isShortText(version)) return undefined;
  if (typeof at !== 'number' || !Number.isSafeInteger(at) || at < 0) return undefined;
  return { node, state, address, version, at };
}

function isShortText(x: unknown): x is string {
  if (typeof x !== 'string' || x.length > MAX_FIELD_CHARS) return false;
  for (let i = 0; i < x.length; i++) if (x.charCodeAt(i) < 0x20) return false;
  return true;
}

/**
 * What this node knows of the others' presence, and who wants to hear of changes. It is only as good as
 * this node's own link to the broker: while that is down (or the broker is, which may first send every
 * node's last will), an offline status proves nothing (anti-entropy's `brokerConnected`).
 */
export class Presence {
  private readonly nodes = new Map<string, NodeStatus & { readonly seenAt: number }>();
  private readonly listeners: ((now: NodeStatus, before: NodeStatus | undefined) => void)[] = [];
  private readonly forgetListeners: ((node: string) => void)[] = [];

  constructor(private readonly self: string) {}

  /** Told of every status that changes a node's state or address (not of this node's own). */
  onChange(listener: (now: NodeStatus, before: NodeStatus | undefined) => void): void {
    this.listeners.push(listener);
  }

  /** A status from the broker for the node its topic names; older than what is known, it is ignored. */
  update(status: NodeStatus): void {
    if (status.node === this.self) return;
    const before = this.nodes.get(status.node);
    if (before === undefined && this.nodes.size >= MAX_TRACKED_NODES) return;
    if (before !== undefined && status.at < before.at) return;
    this.nodes.set(status.node, { ...status, seenAt: Date.now() });
    if (before?.state === status.state && before.address === status.address) return;
    for (const l of this.listeners) l(status, before);
  }

  /** Told of every node forgotten (`cleared`). */
  onForget(listener: (node: string) => void): void {
    this.forgetListeners.push(listener);
  }

  /**
   * The node's retained status was cleared (an empty message: an operator removing the node for good).
   * Only a node known to be offline is forgotten: an empty message cannot be signed, so anyone who can
   * publish could send one, and it must not hide a node that is up.
   */
  cleared(node: string): void {
    if (this.nodes.get(node)?.state !== 'offline') return;
    this.nodes.delete(node);
    for (const l of this.forgetListeners) l(node);
  }

  /** The node's last known status. */
  get(node: string): NodeStatus | undefined {
    return this.nodes.get(node);
  }

  /** The status whose address is `address`, if exactly one node claims it. */
  byAddress(address: string): NodeStatus | undefined {
    let found: NodeStatus | undefined;
    for (const s of this.nodes.values()) {
      if (s.address !== address) continue;
      if (found !== undefined) return undefined;
      found = s;
    }
    return found;
  }

  all(): NodeStatus[] {
    return [...this.nodes.values()].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }
}

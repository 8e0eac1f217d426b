import type { Socket } from 'node:net';
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Config } from '../config/schema.js';
import { type AcknowledgedWrite, newestWall, type Store } from '../store/index.js';
import { maxMessageBytes, type Limits } from '../rules.js';
import { decodeMessage, encodeWrites } from './message.js';
import { decodeStatus, encodeStatus, statusTopic, type NodeState, type Presence } from './presence.js';
import { MessageSigner } from './signature.js';

export interface ReplicatorOptions {
  readonly store: Store;
  readonly nodeId: string;
  readonly mqtt: Config['mqtt'];
  readonly limits: Limits;
  readonly logger: Logger;
  /** Non-empty: messages are signed, and unsigned or badly signed ones are rejected (signature.ts). */
  readonly clusterSecret?: string;
  /** PEM CA bundle for an mqtts:// broker (`[mqtt] ca_file`); the public roots when undefined. */
  readonly ca?: Buffer;
  /** Largest message published; several mutations of one tick share a message up to this size. */
  readonly maxMessageBytes?: number;
  /** 4 for a broker known to speak only MQTT 3.1.1 (the embedded Aedes); default 5, falling back to 4. */
  readonly protocolVersion?: 4 | 5;
  /** Where the other nodes' statuses go (presence.ts); this node's own carries `version`. */
  readonly presence: Presence;
  readonly version: string;
}

/** Counters for STATS; plain fields, bumped on the hot path. */
export class ReplicationStats {
  connected = false;
  /** The broker has our subscription (SUBACK received, or kept in a persistent session). */
  subscribed = false;
  publishedOps = 0;
  publishedMessages = 0;
  publishFailures = 0;
  /** Writes not published because replication was disabled (REPLICATE disable). */
  unpublished = 0;
  receivedMessages = 0;
  appliedOps = 0;
  ignoredOps = 0;
  invalid = 0;
  /** Messages dropped for a missing or wrong signature (only with a cluster secret). */
  rejected = 0;
  /** Milliseconds from a remote write's clock reading to its being applied here, for the last one. */
  lagMs = 0;
}

const MAX_BACKOFF_MS = 30_000;
/** The largest packet MQTT can frame (a 4-byte remaining length). */
const MQTT_MAX_PACKET = 268_435_455;

/**
 * Replication over MQTT (DESIGN.md section 5). Local writes are published as soon as they are
 * acknowledged to their clients, as JSON on `<prefix>/updates/<node_id>`, QoS 1, the writes of one
 * event-loop tick batched into one message. Messages from the other nodes are applied through
 * `Store.applyRemote` (last writer wins), and acknowledged to the broker (PUBACK) only once the writes
 * are as durable as a client's OK would be, so a crash before that gets them delivered again.
 *
 * The broker being away never blocks writes: while disconnected nothing is queued in memory (the
 * failures are counted; anti-entropy repairs them), and the client reconnects with backoff.
 */
export class Replicator {
  readonly stats = new ReplicationStats();
  private readonly client: MqttClient;
  private readonly topic: string;
  private readonly subscription: string;
  private readonly maxMessageBytes: number;
  private readonly signer: MessageSigner | undefined;
  private queued: AcknowledgedWrite[] = [];
  private backoffMs = 1000;
  private outageLogged = false;
  private stopped = false;
  private started = false;
  private flushScheduled = false;
  private retryingOlderProtocol = false;
  private rejectWarnedAt = -Infinity;
  private on = true;
  private readonly statusTopic: string;
  private readonly nodesSubscription: string;
  /** This node's client address (set by `start`), for its status. */
  private address = '';
  /** The time its current status (and last will) carry. */
  private statusAt = 0;

  constructor(private readonly opts: ReplicatorOptions) {
    const prefix = opts.mqtt.topic_prefix;
    this.topic = `${prefix}/updates/${opts.nodeId}`;
    this.subscription = `${prefix}/updates/+`;
    this.statusTopic = statusTopic(prefix, opts.nodeId);
    this.nodesSubscription = `${prefix}/nodes/+`;
    this.maxMessageBytes = opts.maxMessageBytes ?? 256 * 1024;
    this.signer = opts.clusterSecret ? new MessageSigner(opts.clusterSecret) : undefined;
    const options: IClientOptions = {
      clientId: opts.mqtt.client_id,
      clean: opts.mqtt.clean_session,
      keepalive: opts.mqtt.keep_alive,
      reconnectPeriod: this.backoffMs,
      connectTimeout: 5000,
      // MQTT 5 first (no-local, session expiry); Aedes answers "unacceptable protocol version" and we
      // fall back to 3.1.1.
      protocolVersion: opts.protocolVersion ?? 5,
      // With MQTT 5 the broker itself drops what is over our message cap (rules.ts) instead of sending it.
      ...(opts.protocolVersion === 4
        ? {}
        : {
            properties: {
              sessionExpiryInterval: opts.mqtt.clean_session ? 0 : 0xffffffff,
              maximumPacketSize: Math.min(maxMessageBytes(opts.limits) + 64 * 1024, MQTT_MAX_PACKET),
            },
          }),
      queueQoSZero: false,
      // A refused CONNECT (protocol version, credentials) is retried like a lost connection.
      reconnectOnConnackError: true,
      ...(opts.mqtt.username !== '' ? { username: opts.mqtt.username, password: opts.mqtt.password } : {}),
      ...(opts.ca === undefined ? {} : { ca: opts.ca }),
      // Connected by `start`, once the client port is listening: the last will names its address.
      manualConnect: true,
    };
    this.client = mqtt.connect(opts.mqtt.broker_address, options);
    this.client.handleMessage = (packet, done) => this.onPublish(packet, done);
    this.client.on('connect', (ack) => this.onConnect(ack.sessionPresent));
    this.client.on('close', () => this.onDisconnect());
    this.client.on('error', (err) => this.onError(err as Error & { code?: number }));
    opts.store.onAcknowledged((writes) => this.enqueue(writes));
  }

  /**
   * Connects to the broker, with a last will that marks this node offline; `address` is where the other
   * nodes reach its client port (`host:port`, `[network] advertise_address`), which its status tells them.
   */
  start(address: string): void {
    this.started = true;
    this.address = address;
    this.setWill();
    this.client.connect();
  }

  /** The retained offline status the broker publishes if this connection dies (renewed per connection). */
  private setWill(): void {
    this.statusAt = Date.now();
    this.client.options.will = { topic: this.statusTopic, payload: this.status('offline'), qos: 1, retain: true };
  }

  private status(state: NodeState): Buffer {
    const body = encodeStatus({ node: this.opts.nodeId, state, address: this.address, version: this.opts.version, at: this.statusAt });
    return this.signer ? this.signer.sign(this.statusTopic, body) : body;
  }

  /** `name:value` lines for STATS/INFO. */
  statsLines(): string[] {
    const s = this.stats;
    return [
      `replication_enabled:${this.on ? 1 : 0}`,
      `replication_connected:${s.connected ? 1 : 0}`,
      `replication_subscribed:${s.subscribed ? 1 : 0}`,
      `replication_published_ops:${s.publishedOps}`,
      `replication_published_messages:${s.publishedMessages}`,
      `replication_publish_failures:${s.publishFailures}`,
      `replication_unpublished:${s.unpublished}`,
      `replication_received_messages:${s.receivedMessages}`,
      `replication_applied_ops:${s.appliedOps}`,
      `replication_ignored_ops:${s.ignoredOps}`,
      `replication_invalid:${s.invalid}`,
      `replication_rejected:${s.rejected}`,
      `replication_signed:${this.signer ? 1 : 0}`,
      `replication_lag_ms:${s.lagMs}`,
    ];
  }

  /** False after REPLICATE disable. */
  get enabled(): boolean {
    return this.on;
  }

  /**
   * REPLICATE enable|disable: while disabled the node publishes none of its writes and takes no
   * messages (it unsubscribes, so the broker keeps none for it either); anti-entropy repairs what
   * either side missed meanwhile.
   */
  setEnabled(on: boolean): void {
    if (on === this.on) return;
    this.on = on;
    this.opts.logger.info({ enabled: on }, on ? 'replication enabled' : 'replication disabled');
    if (!this.client.connected) return; // onConnect subscribes, or not
    if (on) {
      this.subscribe();
    } else {
      this.stats.subscribed = false;
      this.client.unsubscribe(this.subscription);
    }
  }

  /** Publishes what is queued and this node's offline status, then disconnects. */
  async stop(): Promise<void> {
    this.flush();
    this.stopped = true;
    // Never connected (a start-up that failed first): mqtt has nothing to end, and throws if asked to.
    if (!this.started) return;
    // A clean disconnect sends no last will: say offline ourselves.
    if (this.client.connected && this.address !== '') this.client.publish(this.statusTopic, this.status('offline'), { qos: 1, retain: true });
    // A clean end waits for in-flight publishes to be acknowledged; a broker that is away never will.
    const timer = setTimeout(() => void this.client.endAsync(true), 2000);
    await this.client.endAsync(false);
    clearTimeout(timer);
  }

  private onConnect(sessionPresent: boolean): void {
    // A CONNACK that arrives while stop() ends the client: publishing on it now would throw.
    if (this.stopped) return;
    this.stats.connected = true;
    this.backoffMs = 1000;
    this.client.options.reconnectPeriod = this.backoffMs;
    this.outageLogged = false;
    const sock = this.client.stream as Partial<Socket>;
    sock.setNoDelay?.(true);
    this.opts.logger.info({ broker: this.opts.mqtt.broker_address, sessionPresent }, 'replication connected');
    this.client.publish(this.statusTopic, this.status('online'), { qos: 1, retain: true }, (err) => {
      if (err) this.opts.logger.debug({ err: err.message }, 'status publish failed');
    });
    // Presence is kept whether or not replication is enabled (REPLICATE disable).
    if (!sessionPresent) {
      this.client.subscribe(this.nodesSubscription, { qos: 1 }, (err) => {
        if (err) this.opts.logger.error({ err }, 'presence subscribe failed');
      });
    }
    if (!this.enabled) {
      // REPLICATE disable while away: a persistent session may still hold our subscription.
      if (sessionPresent) this.client.unsubscribe(this.subscription);
      return;
    }
    if (sessionPresent) {
      this.stats.subscribed = true;
      return;
    }
    this.subscribe();
  }

  private subscribe(): void {
    // No-local (MQTT 5) keeps our own messages from coming back; with 3.1.1 the topic check does it.
    const nl = this.client.options.protocolVersion === 5;
    this.client.subscribe(this.subscription, { qos: 1, nl }, (err) => {
      if (err) this.opts.logger.error({ err }, 'replication subscribe failed');
      else this.stats.subscribed = this.enabled;
    });
  }

  private onDisconnect(): void {
    if (this.stopped || this.retryingOlderProtocol) {
      this.retryingOlderProtocol = false;
      return;
    }
    if (this.stats.connected || !this.outageLogged) {
      this.opts.logger.warn({ broker: this.opts.mqtt.broker_address }, 'replication broker unreachable; retrying');
      this.outageLogged = true;
    }
    this.stats.connected = false;
    this.stats.subscribed = false;
    // The next connection's will and online status carry a newer time than this one's will.
    this.setWill();
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.client.options.reconnectPeriod = this.backoffMs;
  }

  private onError(err: Error & { code?: number }): void {
    if (err.code === 1 && this.client.options.protocolVersion === 5) {
      this.opts.logger.info('broker does not speak MQTT 5; using MQTT 3.1.1');
      this.client.options.protocolVersion = 4;
      this.retryingOlderProtocol = true;
      delete this.client.options.properties;
      this.backoffMs = 100;
      this.client.options.reconnectPeriod = this.backoffMs;
      return;
    }
    this.opts.logger.debug({ err: err.message }, 'replication client error');
  }

  private enqueue(writes: AcknowledgedWrite[]): void {
    if (!this.on) {
      this.stats.unpublished += writes.length;
      return;
    }
    if (!this.client.connected) {
      // Not queued in memory: the broker may stay away for long. Anti-entropy repairs these.
      this.stats.publishFailures += writes.length;
      return;
    }
    for (const w of writes) this.queued.push(w);
    // On the next turn, after the clients' replies: publishing from inside the flush delayed a light-load
    // SET's reply 0.85 -> 2.7 ms (bench:cluster) and did not shorten the lag.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const ops = this.queued;
    if (ops.length === 0) return;
    this.queued = [];
    if (!this.client.connected) {
      // Not queued in memory: the broker may stay away for long. Anti-entropy repairs these.
      this.stats.publishFailures += ops.length;
      return;
    }
    for (const message of encodeWrites(this.opts.nodeId, ops, this.maxMessageBytes, this.opts.store.counterWriter)) {
      const payload = this.signer ? this.signer.sign(this.topic, message) : message;
      this.stats.publishedMessages++;
      this.client.publish(this.topic, payload, { qos: 1 }, (err) => {
        if (err) this.stats.publishFailures++;
      });
    }
    this.stats.publishedOps += ops.length;
  }

  /** Applies one message; the broker gets its PUBACK only once the writes are as durable as an OK. */
  private onPublish(packet: IPublishPacket, done: (err?: Error) => void): void {
    if (packet.topic.startsWith(this.nodesSubscription.slice(0, -1))) {
      this.onStatus(packet);
      return done();
    }
    const own = packet.topic === this.topic;
    // Disabled: what was already on its way is left to anti-entropy too.
    if (own || !this.on || !packet.topic.startsWith(this.subscription.slice(0, -1))) return done();
    this.stats.receivedMessages++;
    const now = Date.now();
    let payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (this.signer) {
      const body = payload.length <= maxMessageBytes(this.opts.limits) ? this.signer.verify(packet.topic, payload) : undefined;
      if (body === undefined) {
        this.stats.rejected++;
        // Warned at most once a minute: whoever can publish to the broker must not flood the log.
        if (now - this.rejectWarnedAt >= 60_000) {
          this.rejectWarnedAt = now;
          this.opts.logger.warn({ topic: packet.topic, rejected: this.stats.rejected }, 'dropping replication messages with a missing or wrong signature');
        }
        return done();
      }
      payload = body;
    }
    const decoded = decodeMessage(payload, this.opts.limits);
    // A node publishes only on its own topic: a message naming another node is not applied.
    if (decoded === undefined || packet.topic.slice(this.subscription.length - 1) !== decoded.message.node) {
      this.stats.invalid++;
      this.opts.logger.debug({ topic: packet.topic }, 'ignoring malformed replication message');
      return done();
    }
    const { message, invalidOps } = decoded;
    this.stats.invalid += invalidOps;
    if (message.node === this.opts.nodeId) return done();
    const acks: Promise<void>[] = [];
    try {
      for (const op of message.ops) {
        const ack = this.opts.store.applyRemote(op.key, op.state);
        if (ack === undefined) {
          this.stats.ignoredOps++;
          continue;
        }
        if (ack !== null) acks.push(ack);
        this.stats.appliedOps++;
        this.stats.lagMs = Math.max(0, now - newestWall(op.state));
      }
      this.opts.store.flush();
    } catch (err) {
      // Not in the log (disk full, store closing): no PUBACK, so the broker delivers it again.
      return done(err instanceof Error ? err : new Error(String(err)));
    }
    if (acks.length === 0) return done();
    Promise.all(acks).then(
      () => done(),
      (err: unknown) => done(err instanceof Error ? err : new Error(String(err))),
    );
  }

  /** Another node's status: checked (signature, shape, topic naming its node) before presence hears of it. */
  private onStatus(packet: IPublishPacket): void {
    // An empty retained message clears a status (an operator removing a node for good).
    let payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
    if (payload.length === 0) return this.opts.presence.cleared(packet.topic.slice(this.nodesSubscription.length - 1));
    if (this.signer) {
      const body = payload.length <= MAX_SIGNED_STATUS_BYTES ? this.signer.verify(packet.topic, payload) : undefined;
      if (body === undefined) {
        this.stats.rejected++;
        return;
      }
      payload = body;
    }
    const status = decodeStatus(payload);
    if (status === undefined || packet.topic !== statusTopic(this.opts.mqtt.topic_prefix, status.node)) {
      this.stats.invalid++;
      return;
    }
    this.opts.presence.update(status);
  }
}

const MAX_SIGNED_STATUS_BYTES = 2048;

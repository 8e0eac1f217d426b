import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/*
 * Signed replication (DESIGN.md sections 5 and 7). With a cluster secret, a message's last member is
 * its signature, so it stays one readable JSON object in `mosquitto_sub`:
 *
 *   {"v":1,"node":"node-1","ops":[...],"sig":"<64 hex>"}
 *
 * The signature is HMAC-SHA256, keyed from the secret, over the topic, a NUL, and the message without
 * its signature member (`{"v":1,"node":"node-1","ops":[...]}`): the exact bytes, not a re-encoding,
 * so checking costs one hash and no JSON work. The topic is covered so that a message cannot be moved
 * to another node's topic. A replayed message changes nothing (applying is idempotent, last writer wins).
 */

const SIG_HEAD = Buffer.from(',"sig":"');
const SIG_HEX = 64;
/** `,"sig":"` + 64 hex + `"}` */
const SIG_SUFFIX_BYTES = SIG_HEAD.length + SIG_HEX + 2;

export class MessageSigner {
  private readonly key: Buffer;

  constructor(clusterSecret: string) {
    this.key = createHash('sha256').update('merkle-kv replication key\0').update(clusterSecret, 'utf8').digest();
  }

  /** `payload` (a JSON object ending in `}`) with its signature member appended. */
  sign(topic: string, payload: Buffer): Buffer {
    const sig = this.mac(topic, payload).toString('hex');
    return Buffer.concat([payload.subarray(0, payload.length - 1), SIG_HEAD, Buffer.from(`${sig}"}`)]);
  }

  /**
   * The message without its signature member when the signature is there and right for this topic;
   * undefined when it is missing, malformed or wrong.
   */
  verify(topic: string, signed: Buffer): Buffer | undefined {
    const at = signed.length - SIG_SUFFIX_BYTES;
    if (at < 1 || !signed.subarray(at, at + SIG_HEAD.length).equals(SIG_HEAD)) return undefined;
    if (signed[signed.length - 2] !== 0x22 || signed[signed.length - 1] !== 0x7d) return undefined;
    const hex = signed.toString('latin1', at + SIG_HEAD.length, at + SIG_HEAD.length + SIG_HEX);
    if (!/^[0-9a-f]{64}$/.test(hex)) return undefined;
    const body = Buffer.concat([signed.subarray(0, at), CLOSE]);
    return timingSafeEqual(this.mac(topic, body), Buffer.from(hex, 'hex')) ? body : undefined;
  }

  private mac(topic: string, body: Buffer): Buffer {
    return createHmac('sha256', this.key).update(topic, 'utf8').update(NUL).update(body).digest();
  }
}

const CLOSE = Buffer.from('}');
const NUL = Buffer.from([0]);

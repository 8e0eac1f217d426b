import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ProtocolError } from '../errors.js';
import { expected } from '../expected.js';
import { DEFAULT_SECRET } from '../merkle/hash.js';
import type { PeerClient } from './peer.js';
import { AE_PROTOCOL_VERSION, helloLine, isHex, MAC_BYTES, NONCE_BYTES, parseChallenge, proveLine } from './requests.js';

/*
 * Anti-entropy peers prove to each other that they hold the cluster secret before any AE.* command
 * (DESIGN.md section 7), by challenge and response; nothing secret crosses the wire.
 *
 *   initiator: AE.HELLO <cn> <v>      cn, sn: 16 random bytes each, in hex; v the protocol version
 *   server:    AE.CHALLENGE <sn> <sp> sp = HMAC(K, "server" cn sn): the server proves itself first,
 *   initiator: AE.PROVE <cp>          cp = HMAC(K, "client" cn sn), so SYNC never talks to an impostor
 *   server:    OK                     the connection may now run AE.* commands
 *
 * K is derived from cluster_secret (the built-in default when it is empty, which proves nothing to
 * anyone who has read this source: set a secret on a network you do not trust). Fresh nonces on both
 * sides make a recorded handshake useless, and the role labels keep one side's proof from being
 * reflected as the other's.
 */
export class PeerProof {
  private readonly key: Buffer;

  constructor(clusterSecret: string) {
    const secret = clusterSecret === '' ? DEFAULT_SECRET : clusterSecret;
    this.key = createHash('sha256').update('merkle-kv anti-entropy peer key\0').update(secret, 'utf8').digest();
  }

  nonce(): string {
    return randomBytes(NONCE_BYTES).toString('hex');
  }

  serverProof(cn: string, sn: string): string {
    return this.mac('server', cn, sn);
  }

  clientProof(cn: string, sn: string): string {
    return this.mac('client', cn, sn);
  }

  /** Whether `got` equals `expected` (both hex MACs), in constant time. */
  matches(expected: string, got: string): boolean {
    const a = Buffer.from(expected, 'hex');
    const b = Buffer.from(got, 'hex');
    return isHex(got, MAC_BYTES) && a.length === b.length && timingSafeEqual(a, b);
  }

  private mac(role: string, cn: string, sn: string): string {
    return createHmac('sha256', this.key).update(`${role} ${cn} ${sn}`).digest('hex');
  }
}

/**
 * The initiator's answer to the peer's reply to `AE.HELLO <cn>`: the `AE.PROVE` line, once the peer's
 * proof checks out; a ProtocolError if it does not.
 */
export function answerChallenge(proof: PeerProof, cn: string, reply: string): string {
  const challenge = parseChallenge(reply);
  if (challenge === undefined || !proof.matches(proof.serverProof(cn, challenge.sn), challenge.sp)) {
    throw new ProtocolError('peer could not prove it holds the cluster secret (a different cluster_secret, or not a MerkleKV node)');
  }
  return proveLine(proof.clientProof(cn, challenge.sn));
}

/**
 * The initiator's side: checks the peer's proof (throws if it fails), then sends ours. Resolves once our
 * proof is sent, with the peer's answer to it still to come: the exchange's first request goes out in
 * the same round trip, and the peer, which runs requests in order, sees our proof first. The returned
 * promise rejects if the peer refused our proof.
 */
export async function provePeer(peer: PeerClient, proof: PeerProof): Promise<{ readonly accepted: Promise<void> }> {
  const cn = proof.nonce();
  let challenge: string;
  try {
    challenge = await peer.line(helloLine(cn));
  } catch (err) {
    // An older release refuses the version word as a usage error; a newer one says which it speaks.
    if (!(err instanceof ProtocolError)) throw err;
    throw new ProtocolError(`peer refused the handshake (this node speaks anti-entropy protocol ${AE_PROTOCOL_VERSION}): ${err.message}`, { cause: err });
  }
  const prove = answerChallenge(proof, cn, challenge);
  // Awaited by the caller; a failed exchange may never get to it.
  const accepted = expected(
    peer.line(prove).then((ok) => {
      if (ok !== 'OK') throw new ProtocolError(`peer answered the proof with ${JSON.stringify(ok.slice(0, 80))}`);
    }),
  );
  return { accepted };
}

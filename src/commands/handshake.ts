import { isHex, NONCE_BYTES } from '../antientropy/handshake.js';
import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import type { Session } from '../security/auth.js';
import type { Command, Context, Outcome } from './context.js';

/* The answering side of the anti-entropy handshake (antientropy/handshake.ts has the whole exchange). */

export interface AeHelloRequest {
  readonly kind: 'ae.hello';
  readonly cn: string;
}

export interface AeProveRequest {
  readonly kind: 'ae.prove';
  readonly proof: string;
}

export const aeHello = {
  names: ['AE.HELLO'],
  access: 'public',
  requires: 'a nonce',
  parse(args: Args): AeHelloRequest {
    const cn = args.word()?.toString('latin1');
    if (cn === undefined) throw args.usage();
    args.end();
    if (!isHex(cn, NONCE_BYTES)) throw new ProtocolError(`AE.HELLO nonce must be ${NONCE_BYTES} bytes in lower-case hex`);
    return { kind: 'ae.hello', cn };
  },
  run(req: AeHelloRequest, ctx: Context, out: Output, session: Session): undefined {
    const sn = ctx.peerProof.nonce();
    session.challenge = { cn: req.cn, sn };
    out.utf8Line(`AE.CHALLENGE ${sn} ${ctx.peerProof.serverProof(req.cn, sn)}`);
  },
} as const satisfies Command<AeHelloRequest>;

export const aeProve = {
  names: ['AE.PROVE'],
  access: 'public',
  requires: 'a proof',
  parse(args: Args): AeProveRequest {
    const proof = args.word()?.toString('latin1');
    if (proof === undefined) throw args.usage();
    args.end();
    return { kind: 'ae.prove', proof };
  },
  run(req: AeProveRequest, ctx: Context, out: Output, session: Session): Outcome {
    const challenge = session.challenge;
    // One attempt per challenge: a guesser must start over with a fresh nonce from us.
    session.challenge = undefined;
    if (challenge !== undefined && ctx.peerProof.matches(ctx.peerProof.clientProof(challenge.cn, challenge.sn), req.proof)) {
      session.peer = true;
      out.line('OK');
      return undefined;
    }
    // Answered late and alone, like a wrong password.
    ctx.stats.errors++;
    ctx.stats.authFailures++;
    out.line(challenge === undefined ? 'ERROR AE.PROVE without AE.HELLO' : 'ERROR peer proof failed');
    out.dependOn(ctx.auth.failure());
    return 'barrier';
  },
} as const satisfies Command<AeProveRequest>;

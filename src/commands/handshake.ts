import { challengeLine, parseHello, parseProve, type AeHelloRequest, type AeProveRequest } from '../antientropy/requests.js';
import type { Output } from '../protocol/output.js';
import type { Session } from '../security/auth.js';
import type { Outcome } from '../protocol/dialect.js';
import type { Command, Context } from './context.js';

/* The answering side of the anti-entropy handshake (antientropy/handshake.ts has the whole exchange). */

export const aeHello = {
  names: ['AE.HELLO'],
  access: 'public',
  requires: 'a nonce',
  parse: parseHello,
  execute(req: AeHelloRequest, ctx: Context, out: Output, session: Session): undefined {
    const sn = ctx.peerProof.nonce();
    session.challenge = { cn: req.cn, sn };
    out.utf8Line(challengeLine(sn, ctx.peerProof.serverProof(req.cn, sn)));
  },
} as const satisfies Command<AeHelloRequest>;

export const aeProve = {
  names: ['AE.PROVE'],
  access: 'public',
  requires: 'a proof',
  parse: parseProve,
  execute(req: AeProveRequest, ctx: Context, out: Output, session: Session): Outcome {
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
    out.error(challenge === undefined ? 'AE.PROVE without AE.HELLO' : 'peer proof failed');
    out.dependOn(ctx.auth.failure());
    return 'barrier';
  },
} as const satisfies Command<AeProveRequest>;

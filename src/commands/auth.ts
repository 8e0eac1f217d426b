import { ProtocolError } from '../errors.js';
import type { Args } from '../protocol/args.js';
import type { Output } from '../protocol/output.js';
import { DEFAULT_USER, type Session } from '../security/auth.js';
import type { Outcome } from '../protocol/dialect.js';
import type { Command, Context } from './context.js';

export interface AuthRequest {
  readonly kind: 'auth';
  /** undefined: the one-word form, `[security] password`. */
  readonly user: string | undefined;
  readonly password: Buffer;
}

export default {
  names: ['AUTH'],
  requires: 'a password, or a user name and a password',
  access: 'public',
  parse(args: Args): AuthRequest {
    const first = args.word();
    const second = args.word();
    if (first === undefined) throw args.usage();
    args.end();
    if (second === undefined) return { kind: 'auth', user: undefined, password: first };
    return { kind: 'auth', user: first.toString('utf8'), password: second };
  },
  execute(req: AuthRequest, ctx: Context, out: Output, session: Session): Outcome {
    if (!ctx.auth.required) throw new ProtocolError('AUTH called without any password configured');
    const user = req.user ?? DEFAULT_USER;
    const role = ctx.auth.check(user, req.password);
    if (role !== undefined) {
      session.role = role;
      session.user = user;
      out.line('OK');
      return undefined;
    }
    // A failed attempt leaves the connection as it was (like Redis), and is answered late; nothing
    // after it on this connection runs before that answer, so guesses cannot be pipelined.
    ctx.stats.errors++;
    ctx.stats.authFailures++;
    out.error('invalid password');
    out.dependOn(ctx.auth.failure());
    return 'barrier';
  },
} as const satisfies Command<AuthRequest>;

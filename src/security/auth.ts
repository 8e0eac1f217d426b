import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Role, UserConfig } from '../config/schema.js';

/**
 * What a command needs (DESIGN.md section 7): nothing (PING, QUIT, AUTH), a role (read < write < admin),
 * or a connection that has proven it is an anti-entropy peer (AE.*).
 */
export type Access = 'public' | Role | 'peer';

/** Whether `role` may run a command needing `access` (peer access is not a role's to give). */
export function roleAllows(role: Role, access: Access): boolean {
  if (access === 'public') return true;
  if (access === 'peer') return false;
  // Compared as strings, not looked up in a table by a key that varies: this runs on every request.
  return rank(role) >= rank(access);
}

/** read < write < admin. */
function rank(role: Role): number {
  return role === 'admin' ? 3 : role === 'write' ? 2 : 1;
}

/** The user that `AUTH <password>` (one word) authenticates as; it has every right. */
export const DEFAULT_USER = 'default';

export interface AuthOptions {
  /** `[security] password`: `AUTH <password>` grants admin. */
  readonly password: string;
  /** `[security.users]`: `AUTH <name> <password>` grants the user's role. */
  readonly users: Readonly<Record<string, UserConfig>>;
  /** Failed attempts are answered no faster than one per this many ms, across all connections. */
  readonly failureDelayMs?: number;
}

const MAX_FAILURE_WAIT_MS = 5000;

/**
 * Checks `AUTH` attempts. Passwords are compared as HMACs under a key made at start-up, so the
 * comparison is of equal-length digests in constant time, and nothing about a password's length or
 * content leaks through timing. Failures are answered one at a time, `failureDelayMs` apart, whatever
 * the number of connections (up to a wait of 5 s), and a connection runs nothing after a failed AUTH
 * until its answer is out: a brute-force guesser gets a few guesses a second in all.
 */
export class Authenticator {
  private readonly key = randomBytes(32);
  private readonly accounts = new Map<string, { digest: Buffer; role: Role }>();
  private readonly failureDelayMs: number;
  private nextFailureAt = 0;

  constructor(opts: AuthOptions) {
    this.failureDelayMs = opts.failureDelayMs ?? 200;
    this.setAccounts(opts);
  }

  /**
   * The password and users from now on (a config reload): new connections and AUTH attempts check these;
   * a connection keeps what it has proven already.
   */
  setAccounts(opts: Pick<AuthOptions, 'password' | 'users'>): void {
    this.accounts.clear();
    if (opts.password !== '') this.accounts.set(DEFAULT_USER, { digest: this.digest(opts.password), role: 'admin' });
    for (const [name, user] of Object.entries(opts.users)) {
      this.accounts.set(name, { digest: this.digest(user.password), role: user.role });
    }
  }

  /** Whether clients must AUTH before anything but PING and QUIT. */
  get required(): boolean {
    return this.accounts.size > 0;
  }

  /** The role granted to `user` (DEFAULT_USER for one-word AUTH) with `password`, or undefined. */
  check(user: string, password: Buffer): Role | undefined {
    const account = this.accounts.get(user);
    // An unknown user costs the same as a wrong password.
    const expected = account?.digest ?? this.digest('');
    const ok = timingSafeEqual(this.digest(password), expected);
    return ok && account !== undefined ? account.role : undefined;
  }

  /** Resolves when a failed attempt may be answered (see the class comment). */
  failure(): Promise<void> {
    const now = Date.now();
    // The queue of waiting failures is capped (each connection has at most one, see AUTH): past the
    // cap a failure waits the cap, so timers cannot pile up for hours.
    this.nextFailureAt = Math.min(Math.max(now, this.nextFailureAt) + this.failureDelayMs, now + MAX_FAILURE_WAIT_MS);
    const wait = this.nextFailureAt - now;
    return new Promise((resolve) => setTimeout(resolve, wait).unref());
  }

  private digest(password: string | Buffer): Buffer {
    return createHmac('sha256', this.key).update(password).digest();
  }
}

/** What one client connection has proven: set by AUTH and by the anti-entropy handshake. */
export class Session {
  /** undefined until AUTH succeeds (on a node that requires it). */
  role: Role | undefined;
  user: string;
  /** The other end proved it holds the cluster secret (antientropy/handshake.ts): AE.* may run. */
  peer = false;
  /** The nonces of a handshake begun by AE.HELLO, until AE.PROVE. */
  challenge: { readonly cn: string; readonly sn: string } | undefined = undefined;

  constructor(auth: Authenticator) {
    this.role = auth.required ? undefined : 'admin';
    this.user = auth.required ? '' : DEFAULT_USER;
  }
}

/** Whether a listening address is reachable from this machine only (no password needed there). */
export function isLoopbackAddress(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.') || address === 'localhost';
}

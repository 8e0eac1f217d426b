/**
 * Stable codes of the client's errors: branch on `code` (or `instanceof`), never on message text.
 */
export const ClientErrorCode = {
  /** The server answered `ERROR <message>`. */
  Reply: 'ERR_REPLY',
  /** No connection: it could not be made, it was lost, or the client is closed. */
  Connection: 'ERR_CONNECTION',
  /** No reply within the request's timeout. */
  Timeout: 'ERR_TIMEOUT',
  /** An argument the line protocol cannot carry (a key with a space, a value with a line break). */
  Argument: 'ERR_ARGUMENT',
  /** A reply that does not fit its request (a server of another protocol, or a newer one). */
  UnexpectedReply: 'ERR_UNEXPECTED_REPLY',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** Base class of every error the client rejects with. */
export class MerkleKVError extends Error {
  readonly code: ClientErrorCode;

  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MerkleKVError';
    this.code = code;
  }
}

/**
 * The server answered `ERROR <message>` (DESIGN.md section 2). `message` is the text after `ERROR `, as
 * sent; the connection stays usable.
 */
export class ReplyError extends MerkleKVError {
  /** The command word of the request (`GET`, `AUTH`), never its arguments: they may hold a password. */
  readonly command: string;

  constructor(message: string, command: string) {
    super(ClientErrorCode.Reply, message);
    this.name = 'ReplyError';
    this.command = command;
  }
}

/** The connection could not be made or was lost (`cause` says why), or the client is closed. */
export class ConnectionError extends MerkleKVError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ClientErrorCode.Connection, message, options);
    this.name = 'ConnectionError';
  }
}

/**
 * No reply came within the request's `timeout`. If the request had been sent, the connection is
 * destroyed and made again: the replies still to come could no longer be matched to their requests.
 */
export class TimeoutError extends MerkleKVError {
  /** The timeout that ran out, in milliseconds. */
  readonly timeout: number;

  constructor(message: string, timeout: number) {
    super(ClientErrorCode.Timeout, message);
    this.name = 'TimeoutError';
    this.timeout = timeout;
  }
}

/** An argument the line protocol cannot carry; nothing was sent. */
export class ArgumentError extends MerkleKVError {
  constructor(message: string) {
    super(ClientErrorCode.Argument, message);
    this.name = 'ArgumentError';
  }
}

/** A reply of a shape its request never gets. */
export class UnexpectedReplyError extends MerkleKVError {
  constructor(message: string) {
    super(ClientErrorCode.UnexpectedReply, message);
    this.name = 'UnexpectedReplyError';
  }
}

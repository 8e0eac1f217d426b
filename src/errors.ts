/**
 * Stable error codes. Every error the node raises on purpose is a `MerkleKvError` with one of these,
 * so callers branch on `code`, never on message text.
 */
export const ErrorCode = {
  Config: 'ERR_CONFIG',
  Protocol: 'ERR_PROTOCOL',
  LineTooLong: 'ERR_LINE_TOO_LONG',
  Storage: 'ERR_STORAGE',
  /** An anti-entropy exchange (SYNC or periodic) failed. */
  Sync: 'ERR_SYNC',
  /** A peer could not be reached, stopped answering, or closed the connection. */
  Peer: 'ERR_PEER',
  /** The peer address turned out to be this node. */
  SelfPeer: 'ERR_SELF_PEER',
  /** A client write past `[storage] memory_limit_mb` (store/capacity.ts). */
  StorageFull: 'ERR_STORAGE_FULL',
  /** The data directory is held by another running node. */
  DirectoryInUse: 'ERR_DIR_IN_USE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of the node's own errors. */
export class MerkleKvError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MerkleKvError';
    this.code = code;
  }
}

/** A start-up configuration problem: reported as one line, exit code 2, no stack trace. */
export class ConfigError extends MerkleKvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Config, message, options);
    this.name = 'ConfigError';
  }
}

/**
 * A request the server refuses. Its message is exactly what follows `ERROR ` on the wire
 * (DESIGN.md section 2), so it must be one line of client-safe text.
 */
export class ProtocolError extends MerkleKvError {
  constructor(message: string, options?: { code?: ErrorCode; cause?: unknown }) {
    super(options?.code ?? ErrorCode.Protocol, message, options);
    this.name = 'ProtocolError';
  }
}

/** Why an anti-entropy exchange failed, as the one line SYNC answers after `ERROR `. */
export class SyncError extends ProtocolError {
  constructor(
    message: string,
    /** The peer turned out to be this node. */
    readonly self: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, { code: ErrorCode.Sync, ...options });
    this.name = 'SyncError';
  }
}

/** A peer could not be reached, did not answer in time, or closed the connection. */
export class PeerError extends MerkleKvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Peer, message, options);
    this.name = 'PeerError';
  }
}

/** The peer is this node (a peer list shared by every node names it too). */
export class SelfPeerError extends MerkleKvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.SelfPeer, message, options);
    this.name = 'SelfPeerError';
  }
}

/** LMDB refused or failed a read or a commit. */
export class StorageError extends MerkleKvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Storage, message, options);
    this.name = 'StorageError';
  }
}

/** The data directory is held by another running node (store/lock.ts): start-up is refused. */
export class DirectoryInUseError extends MerkleKvError {
  constructor(message: string) {
    super(ErrorCode.DirectoryInUse, message);
    this.name = 'DirectoryInUseError';
  }
}

/**
 * Stable error codes. Every error the node raises on purpose is a `MerkleKvError` with one of these,
 * so callers branch on `code`, never on message text.
 */
export const ErrorCode = {
  Config: 'ERR_CONFIG',
  Protocol: 'ERR_PROTOCOL',
  LineTooLong: 'ERR_LINE_TOO_LONG',
  Storage: 'ERR_STORAGE',
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
  constructor(message: string, code: ErrorCode = ErrorCode.Protocol) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}

/** LMDB refused or failed a read or a commit. */
export class StorageError extends MerkleKvError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Storage, message, options);
    this.name = 'StorageError';
  }
}

/**
 * Why a flow failed. `kind` is stable: either the problem type the server sent (its full URN, e.g.
 * urn:ietf:params:acme:error:rateLimited) or one of the local kinds below. Reports count failed
 * flows by kind.
 */
export type LocalErrorKind =
  /** A request or the whole flow ran past its time limit. */
  | 'timeout'
  /** The connection failed (refused, reset, TLS). */
  | 'network'
  /** An answer that breaks RFC 8555: unexpected status, bad JSON, missing header or field. */
  | 'badResponse'
  /** The certificate does not parse, does not chain, or does not match the CSR's key and names. */
  | 'badCertificate'
  /** An authorization became invalid without a problem document saying why. */
  | 'invalidAuthorization'
  /** An order became invalid without a problem document saying why. */
  | 'invalidOrder'
  /** A bug in anvil bench itself (an exception it did not expect); the sample has the stack. */
  | 'generator';

export class BenchError extends Error {
  constructor(
    readonly kind: LocalErrorKind | `urn:${string}` | string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BenchError';
  }
}

/** Setup failures (the directory, the responder, accounts) end the run; their codes are stable. */
export type BenchSetupCode = 'DIRECTORY' | 'RESPONDER' | 'ACCOUNT' | 'BAD_INPUT';

export class BenchSetupError extends Error {
  constructor(
    readonly code: BenchSetupCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'BenchSetupError';
  }
}

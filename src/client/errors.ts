/**
 * Client errors with stable codes, so callers switch on `code` (and on `problem.type` for server
 * problems) instead of parsing messages.
 */
import type { ProblemJson } from '../protocol/types.js';

export type ClientErrorCode =
  | 'ACME_PROBLEM'
  | 'BAD_RESPONSE'
  | 'INSECURE_DIRECTORY'
  | 'CROSS_ORIGIN'
  | 'NETWORK'
  | 'TIMEOUT'
  | 'RESPONSE_TOO_LARGE'
  | 'RETRIES_EXHAUSTED'
  /** dns-01: a CNAME, SOA, NS or address lookup failed. */
  | 'DNS_LOOKUP'
  /** dns-01: the CNAME chain of _acme-challenge.<name> loops, is too long, or ends in a bad name. */
  | 'DNS_CNAME_CHAIN'
  /** dns-01: not every authoritative server served the TXT record before the deadline. */
  | 'DNS_PROPAGATION_TIMEOUT'
  /** Something the user gave (a file, a flag, a key) is not usable. */
  | 'BAD_INPUT'
  /** A local file or directory of the store could not be read or written. */
  | 'STORE'
  /** Another process holds the lineage's lock. */
  | 'LOCKED'
  /** A pre, post, deploy or notify hook failed (non-zero exit, signal, or timeout). */
  | 'HOOK'
  /** An installer (anvil install nginx) failed: config test, reload or the TLS check; it rolled back. */
  | 'INSTALL'
  /** A revocation check (OCSP or CRL) could not give an answer. */
  | 'REVOCATION_CHECK';

export class AcmeClientError extends Error {
  readonly code: ClientErrorCode;
  constructor(code: ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AcmeClientError';
    this.code = code;
  }
}

/** A problem document from the server (RFC 8555 §6.7), typed. */
export class AcmeProblemError extends AcmeClientError {
  /** Short type: "badNonce", "rateLimited", ... (the part after urn:ietf:params:acme:error:), or the full URI for others. */
  readonly type: string;
  readonly status: number;
  readonly detail: string;
  readonly subproblems: ProblemJson[];
  readonly problem: ProblemJson;
  /** Seconds from Retry-After, when the server sent one. */
  readonly retryAfter: number | undefined;
  /** Set when the problem is a failed validation: the identifier whose authorization failed. */
  identifier?: string;

  constructor(problem: ProblemJson, status: number, retryAfter: number | undefined, url: string) {
    const type = problem.type.startsWith('urn:ietf:params:acme:error:') ? problem.type.slice('urn:ietf:params:acme:error:'.length) : problem.type;
    super('ACME_PROBLEM', `${url}: ${type}: ${problem.detail ?? '(no detail)'}`);
    this.name = 'AcmeProblemError';
    this.type = type;
    this.status = status;
    this.detail = problem.detail ?? '';
    this.subproblems = problem.subproblems ?? [];
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

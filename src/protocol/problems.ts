/**
 * RFC 8555 §6.7 problem documents: one table of types and HTTP statuses, one error class.
 * Server code throws AcmeProblem; only the HTTP edge turns it into JSON. Anything that is not an
 * AcmeProblem becomes a bare serverInternal there, so internal messages never leak.
 */
import type { Identifier } from './types.js';

export const ACME_ERROR_PREFIX = 'urn:ietf:params:acme:error:';

/** Every problem type Anvil emits, with the HTTP status it is served with. */
export const PROBLEM_TYPES = {
  accountDoesNotExist: 400,
  /** RFC 9773 §7.4: the certificate named in "replaces" was already replaced. */
  alreadyReplaced: 409,
  alreadyRevoked: 400,
  badCSR: 400,
  badNonce: 400,
  badPublicKey: 400,
  badRevocationReason: 400,
  badSignatureAlgorithm: 400,
  caa: 403,
  compound: 403,
  connection: 400,
  dns: 400,
  externalAccountRequired: 403,
  incorrectResponse: 403,
  /** draft-ietf-acme-profiles: the order names a profile this CA does not offer. */
  invalidProfile: 400,
  invalidContact: 400,
  malformed: 400,
  orderNotReady: 403,
  rateLimited: 429,
  rejectedIdentifier: 400,
  serverInternal: 500,
  tls: 400,
  unauthorized: 403,
  unsupportedContact: 400,
  unsupportedIdentifier: 400,
  userActionRequired: 403,
  badCertificateProfile: 400,
} as const;

export type ProblemType = keyof typeof PROBLEM_TYPES;

/** The JSON body of a problem document (RFC 7807 + RFC 8555 §6.7.1). */
export interface ProblemDocument {
  type: string;
  detail?: string;
  status?: number;
  identifier?: Identifier;
  subproblems?: ProblemDocument[];
  algorithms?: string[];
}

export interface ProblemOptions {
  /** Overrides the table's status where the RFC asks for a specific one (e.g. 401, 404, 405, 409, 413, 415). */
  status?: number;
  identifier?: Identifier;
  subproblems?: AcmeProblem[];
  /** For badSignatureAlgorithm (RFC 8555 §6.2). */
  algorithms?: string[];
  /** Seconds, sent as Retry-After. */
  retryAfter?: number;
  /** Extra response headers, e.g. Location on 409 keyChange conflicts. */
  headers?: Record<string, string>;
}

export class AcmeProblem extends Error {
  readonly type: ProblemType;
  readonly detail: string;
  readonly status: number;
  readonly identifier?: Identifier;
  readonly subproblems?: AcmeProblem[];
  readonly algorithms?: string[];
  readonly retryAfter?: number;
  readonly headers?: Record<string, string>;

  constructor(type: ProblemType, detail: string, opts: ProblemOptions = {}) {
    super(`${type}: ${detail}`);
    this.name = 'AcmeProblem';
    this.type = type;
    this.detail = detail;
    this.status = opts.status ?? PROBLEM_TYPES[type];
    if (opts.identifier) this.identifier = opts.identifier;
    if (opts.subproblems?.length) this.subproblems = opts.subproblems;
    if (opts.algorithms) this.algorithms = opts.algorithms;
    if (opts.retryAfter !== undefined) this.retryAfter = opts.retryAfter;
    if (opts.headers) this.headers = opts.headers;
  }

  toJSON(): ProblemDocument {
    const doc: ProblemDocument = { type: ACME_ERROR_PREFIX + this.type, detail: this.detail, status: this.status };
    if (this.identifier) doc.identifier = this.identifier;
    if (this.subproblems) doc.subproblems = this.subproblems.map((p) => p.toJSON());
    if (this.algorithms) doc.algorithms = this.algorithms;
    return doc;
  }

  /** Rebuilds a problem from its stored JSON form (challenge and order errors are stored). */
  static fromJSON(doc: ProblemDocument): AcmeProblem {
    const short = doc.type.startsWith(ACME_ERROR_PREFIX) ? doc.type.slice(ACME_ERROR_PREFIX.length) : 'serverInternal';
    const type = (short in PROBLEM_TYPES ? short : 'serverInternal') as ProblemType;
    return new AcmeProblem(type, doc.detail ?? '', {
      ...(doc.status !== undefined ? { status: doc.status } : {}),
      ...(doc.identifier ? { identifier: doc.identifier } : {}),
      ...(doc.subproblems ? { subproblems: doc.subproblems.map((s) => AcmeProblem.fromJSON(s)) } : {}),
    });
  }
}

export function isProblem(e: unknown): e is AcmeProblem {
  return e instanceof AcmeProblem;
}

/** Shorthand constructors keep call sites short; the type and status still come from the table. */
export const problem = (type: ProblemType, detail: string, opts?: ProblemOptions) => new AcmeProblem(type, detail, opts);

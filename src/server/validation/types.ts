/**
 * The validation authority's contract (Boulder's VA). It looks at the outside world and returns a
 * result; it never writes CA state. The authority records the result.
 */
import type { AcmeProblem } from '../../protocol/problems.js';
import type { ChallengeType, Identifier } from '../../protocol/types.js';

export interface ValidationRequest {
  type: ChallengeType;
  identifier: Identifier;
  token: string;
  /** token + '.' + base64url(JWK thumbprint of the account key), RFC 8555 §8.1. */
  keyAuthorization: string;
}

/** What the validator saw: kept with the challenge for the operator (like Boulder's validationRecord). */
export interface ValidationRecord {
  url?: string;
  hostname?: string;
  port?: number;
  addressesResolved?: string[];
  addressUsed?: string;
  resolverAddrs?: string[];
}

export type ValidationResult =
  | { ok: true; records: ValidationRecord[] }
  | { ok: false; problem: AcmeProblem; records: ValidationRecord[] };

export interface CaaCheck {
  /** DNS name without "*.". */
  name: string;
  wildcard: boolean;
  /** The account URL, for RFC 8657 accounturi. */
  accountUri: string;
  /** The challenge type that validated the name, for RFC 8657 validationmethods. */
  method: string;
}

export interface Validator {
  validate(req: ValidationRequest): Promise<ValidationResult>;
  /** CAA (RFC 8659): null if issuance is permitted. Absent when CAA checking is off. */
  checkCaa?(req: CaaCheck): Promise<AcmeProblem | null>;
}

/** Which resolved addresses the validator may connect to (SECURITY.md "Validation"). */
export interface AddressPolicy {
  /** 127.0.0.0/8 and ::1. Off by default; tests turn it on. */
  allowLoopback: boolean;
  /** RFC 1918, RFC 6598 (100.64/10), fc00::/7. Off by default (a private CA may turn it on). */
  allowPrivate: boolean;
  /** 169.254.0.0/16 and fe80::/10, except cloud metadata addresses which are always refused. */
  allowLinkLocal: boolean;
  /** Extra CIDRs that are always refused. */
  deny: string[];
}

export interface ValidationConfig {
  /** DNS servers as "host:port" or "host"; empty means the system's resolvers. */
  resolvers: string[];
  /** Port http-01 connects to (RFC 8555 §8.3 says 80; configurable for tests). */
  httpPort: number;
  /** Port tls-alpn-01 connects to (RFC 8737 says 443; configurable for tests). */
  tlsPort: number;
  /** Redirect targets may use these ports only (defaults 80 and 443 plus the two above). */
  connectTimeoutMs: number;
  /** Bound on a whole validation attempt, including redirects and DNS. */
  totalTimeoutMs: number;
  dnsTimeoutMs: number;
  maxRedirects: number;
  addressPolicy: AddressPolicy;
  /** When set, CAA is checked with these issuer domain names (the CA's caaIdentities). */
  caa?: { identities: string[] };
}

export const DEFAULT_VALIDATION_CONFIG: ValidationConfig = {
  resolvers: [],
  httpPort: 80,
  tlsPort: 443,
  connectTimeoutMs: 5_000,
  totalTimeoutMs: 20_000,
  dnsTimeoutMs: 5_000,
  maxRedirects: 10,
  addressPolicy: { allowLoopback: false, allowPrivate: false, allowLinkLocal: false, deny: [] },
};

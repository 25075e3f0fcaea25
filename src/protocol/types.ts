/** RFC 8555 wire types: field names and string unions exactly as the RFC spells them. */

export type IdentifierType = 'dns' | 'ip';
export interface Identifier {
  type: IdentifierType;
  value: string;
}

export type ChallengeType = 'http-01' | 'dns-01' | 'tls-alpn-01';
export const CHALLENGE_TYPES: readonly ChallengeType[] = ['http-01', 'dns-01', 'tls-alpn-01'];

export type AccountStatus = 'valid' | 'deactivated' | 'revoked';
export type OrderStatus = 'pending' | 'ready' | 'processing' | 'valid' | 'invalid';
export type AuthorizationStatus = 'pending' | 'valid' | 'invalid' | 'deactivated' | 'expired' | 'revoked';
export type ChallengeStatus = 'pending' | 'processing' | 'valid' | 'invalid';

/** RFC 5280 §5.3.1 CRLReason values ACME accepts (7 is unused; 8 removeFromCRL is not for end entities). */
export const REVOCATION_REASONS = [0, 1, 2, 3, 4, 5, 6, 9, 10] as const;

export interface Directory {
  newNonce: string;
  newAccount: string;
  newOrder: string;
  newAuthz?: string;
  revokeCert: string;
  keyChange: string;
  /** RFC 9773 §3: the ACME Renewal Information base URL (GET <renewalInfo>/<certID>). */
  renewalInfo?: string;
  meta?: {
    termsOfService?: string;
    website?: string;
    caaIdentities?: string[];
    externalAccountRequired?: boolean;
    /** draft-ietf-acme-profiles: profile name -> human-readable description. */
    profiles?: Record<string, string>;
  };
}

/** RFC 9773 §4.2: the body of a renewalInfo response. */
export interface RenewalInfoJson {
  suggestedWindow: { start: string; end: string };
  explanationURL?: string;
}

export interface ProblemJson {
  type: string;
  detail?: string;
  status?: number;
  identifier?: Identifier;
  subproblems?: ProblemJson[];
}

export interface AccountJson {
  status: AccountStatus;
  contact?: string[];
  termsOfServiceAgreed?: boolean;
  externalAccountBinding?: unknown;
  orders: string;
}

export interface OrderJson {
  status: OrderStatus;
  expires: string;
  identifiers: Identifier[];
  notBefore?: string;
  notAfter?: string;
  error?: ProblemJson;
  authorizations: string[];
  finalize: string;
  certificate?: string;
  /** draft-ietf-acme-profiles. */
  profile?: string;
  /** RFC 9773 §5: the certID of the certificate this order replaces. */
  replaces?: string;
}

export interface ChallengeJson {
  type: ChallengeType;
  url: string;
  status: ChallengeStatus;
  token: string;
  validated?: string;
  error?: ProblemJson;
}

export interface AuthorizationJson {
  identifier: Identifier;
  status: AuthorizationStatus;
  expires: string;
  challenges: ChallengeJson[];
  wildcard?: boolean;
}

/**
 * The acme-dns rules, without HTTP: registering (a username, a password, a subdomain and the
 * addresses allowed to update) and updating a subdomain's TXT value. Each registration may only
 * update its own subdomain. Failures are `AcmeDnsError`s whose `code` is the acme-dns error string
 * the API returns ({"error": code}) and whose `status` is its HTTP status.
 */
import type { Clock } from '../../lib/clock.js';
import { systemClock } from '../../lib/clock.js';
import { cryptoRandom, type Random } from '../../lib/random.js';
import type { DnsStore } from '../../storage/dns-store.js';
import { addressInCidrs, parseCidr } from './cidr.js';
import { dummyHash, hashPassword, randomPassword, randomUuid, UUID_RE, verifyPassword, wellFormedPassword } from './credentials.js';

export type AcmeDnsErrorCode =
  | 'forbidden'
  | 'registration_closed'
  | 'bad_subdomain'
  | 'bad_txt'
  | 'malformed_json_payload'
  | 'invalid_allowfrom_cidr'
  | 'db_error';

export class AcmeDnsError extends Error {
  readonly code: AcmeDnsErrorCode;
  readonly status: number;
  constructor(code: AcmeDnsErrorCode, status: number, message: string = code) {
    super(message);
    this.name = 'AcmeDnsError';
    this.code = code;
    this.status = status;
  }
}

/** The answer to a registration, with acme-dns's field names. The password is shown only here. */
export interface RegistrationCredentials {
  username: string;
  password: string;
  fulldomain: string;
  subdomain: string;
  allowfrom: string[];
}

/** An ACME dns-01 value: base64url of a SHA-256 digest, 43 characters. */
export const TXT_RE = /^[A-Za-z0-9_-]{43}$/;

/** acme-dns's subdomain rule: one DNS label of letters, digits and inner hyphens. */
const SUBDOMAIN_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

export class AcmeDnsRegistry {
  readonly #clock: Clock;
  readonly #random: Random;

  constructor(
    private readonly store: DnsStore,
    readonly zone: string,
    opts: { clock?: Clock; random?: Random } = {},
  ) {
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? cryptoRandom;
  }

  /** Creates a registration. `allowFrom` entries must be CIDRs (acme-dns refuses the request otherwise). */
  async register(allowFrom: unknown = []): Promise<RegistrationCredentials> {
    if (!Array.isArray(allowFrom) || !allowFrom.every((c) => typeof c === 'string' && parseCidr(c) !== null)) {
      throw new AcmeDnsError('invalid_allowfrom_cidr', 400);
    }
    const cidrs = (allowFrom as string[]).map((c) => c.trim().replace(/[[\]]/g, ''));
    const username = randomUuid(this.#random);
    const subdomain = randomUuid(this.#random);
    const password = randomPassword(this.#random);
    await this.store.createRegistration({
      username,
      passwordHash: await hashPassword(password, this.#random),
      subdomain,
      allowFrom: cidrs,
      createdAt: this.#clock.now(),
    });
    return { username, password, fulldomain: `${subdomain}.${this.zone}`, subdomain, allowfrom: cidrs };
  }

  /**
   * Sets `txt` as the newest value of `subdomain` (the older of the two current values goes).
   * Every authentication failure is the same 401 "forbidden", as in acme-dns: wrong or unknown
   * user, wrong key, an address outside the registration's allowfrom, another registration's
   * subdomain.
   */
  async update(a: { user: string | undefined; key: string | undefined; clientAddress: string; subdomain: unknown; txt: unknown }): Promise<string> {
    const forbidden = new AcmeDnsError('forbidden', 401);
    const user = a.user ?? '';
    const key = a.key ?? '';
    if (!UUID_RE.test(user) || !wellFormedPassword(key)) throw forbidden;
    const reg = await this.store.getRegistration(user.toLowerCase());
    // The same work whether or not the user exists: no timing oracle for valid usernames.
    const ok = await verifyPassword(key, reg?.passwordHash ?? (await dummyHash()));
    if (!reg || !ok) throw forbidden;
    if (reg.allowFrom.length && !addressInCidrs(a.clientAddress, reg.allowFrom)) throw forbidden;
    if (typeof a.subdomain !== 'string' || a.subdomain.toLowerCase() !== reg.subdomain) {
      throw typeof a.subdomain === 'string' && !SUBDOMAIN_RE.test(a.subdomain) ? new AcmeDnsError('bad_subdomain', 400) : forbidden;
    }
    if (typeof a.txt !== 'string' || !TXT_RE.test(a.txt)) throw new AcmeDnsError('bad_txt', 400);
    let stored: boolean;
    try {
      stored = await this.store.putTxt(reg.subdomain, a.txt, this.#clock.now());
    } catch (e) {
      throw new AcmeDnsError('db_error', 500, `db_error: ${(e as Error).message}`);
    }
    if (!stored) throw new AcmeDnsError('db_error', 500);
    return a.txt;
  }
}

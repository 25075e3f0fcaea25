/**
 * Certificate profiles (draft-ietf-acme-profiles): named sets of issuance choices a client picks
 * with "profile" in newOrder. Anvil offers four built-ins; the operator may redefine them or add
 * more in config (issuance.profiles), and chooses the default for orders that name none.
 */
const DAY = 86_400_000;

export type ExtendedKeyUsageName = 'serverAuth' | 'clientAuth';

export interface ProfileDefinition {
  description: string;
  /** Leaf lifetime in days (fractions allowed: 160 hours is 6.667). */
  lifetimeDays: number;
  extendedKeyUsages: ExtendedKeyUsageName[];
}

export interface Profile {
  name: string;
  description: string;
  lifetimeMs: number;
  serverAuth: boolean;
  clientAuth: boolean;
}

export interface ProfileSettings {
  /** issuance.lifetimeDays: the lifetime of `classic`, `tlsserver` and `mtls` unless redefined. */
  lifetimeDays: number;
  /** issuance.clientAuth: `classic` also carries clientAuth (the pre-profiles behaviour). */
  clientAuth: boolean;
  profiles: Record<string, ProfileDefinition>;
  defaultProfile: string;
}

/** Built-in profiles; `lifetimeDays` comes from issuance.lifetimeDays except for `shortlived`. */
export function builtinProfiles(lifetimeDays: number, classicClientAuth: boolean): Record<string, ProfileDefinition> {
  const days = Number(lifetimeDays.toFixed(4));
  return {
    classic: {
      description: `TLS server certificates valid ${days} days${classicClientAuth ? ' (serverAuth and clientAuth)' : ''}`,
      lifetimeDays,
      extendedKeyUsages: classicClientAuth ? ['serverAuth', 'clientAuth'] : ['serverAuth'],
    },
    tlsserver: {
      description: `TLS server certificates valid ${days} days, serverAuth only`,
      lifetimeDays,
      extendedKeyUsages: ['serverAuth'],
    },
    shortlived: {
      // 160 hours, as Let's Encrypt's shortlived profile: under a week, so revocation matters less.
      description: 'Short-lived TLS server certificates valid 160 hours (about 6.7 days); renew every 3 days',
      lifetimeDays: 160 / 24,
      extendedKeyUsages: ['serverAuth'],
    },
    mtls: {
      description: `Certificates for mutual TLS valid ${days} days (serverAuth and clientAuth)`,
      lifetimeDays,
      extendedKeyUsages: ['serverAuth', 'clientAuth'],
    },
  };
}

export class Profiles {
  readonly #byName: Map<string, Profile>;
  readonly defaultName: string;

  constructor(s: ProfileSettings) {
    const defs = { ...builtinProfiles(s.lifetimeDays, s.clientAuth), ...s.profiles };
    this.#byName = new Map(
      Object.entries(defs).map(([name, d]) => [
        name,
        {
          name,
          description: d.description,
          lifetimeMs: Math.round(d.lifetimeDays * DAY),
          serverAuth: d.extendedKeyUsages.includes('serverAuth'),
          clientAuth: d.extendedKeyUsages.includes('clientAuth'),
        },
      ]),
    );
    if (!this.#byName.has(s.defaultProfile)) {
      throw Object.assign(new Error(`issuance.defaultProfile "${s.defaultProfile}" is not a profile (have: ${[...this.#byName.keys()].join(', ')})`), {
        code: 'CONFIG_INVALID',
      });
    }
    this.defaultName = s.defaultProfile;
  }

  get(name: string): Profile | undefined {
    return this.#byName.get(name);
  }

  get default(): Profile {
    return this.#byName.get(this.defaultName)!;
  }

  names(): string[] {
    return [...this.#byName.keys()];
  }

  /** For the directory's meta.profiles. */
  descriptions(): Record<string, string> {
    return Object.fromEntries([...this.#byName.values()].map((p) => [p.name, p.description]));
  }
}

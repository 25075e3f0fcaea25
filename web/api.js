// @ts-check
/**
 * The management API as the dashboard calls it (docs/dashboard.md). The session is an HttpOnly
 * cookie the page never sees; every change also sends X-Anvil-CSRF, which the server demands of
 * cookie-authenticated requests other than GET.
 */

export const API = '/api/v1';

/** A failed call: the problem document's title and detail, and the HTTP status. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} title
   * @param {string} detail
   */
  constructor(status, title, detail) {
    super(detail ? `${title}: ${detail}` : title);
    this.status = status;
    this.title = title;
    this.detail = detail;
  }
}

/** @type {(err: ApiError) => void} */
let onUnauthorized = () => {};

/** Called when a call other than the login answers 401 (the session ended or was revoked). */
export function setUnauthorizedHandler(/** @type {(err: ApiError) => void} */ fn) {
  onUnauthorized = fn;
}

/**
 * Calls the API and returns the parsed JSON (null for 204). Throws ApiError for an error status,
 * and for a network failure (status 0).
 * @param {string} path under /api/v1, with its query
 * @param {{ method?: string, body?: unknown, login?: boolean }} [opts]
 * @returns {Promise<any>}
 */
export async function call(path, opts = {}) {
  const method = opts.method ?? 'GET';
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json, application/problem+json' };
  if (method !== 'GET' && method !== 'HEAD') headers['X-Anvil-CSRF'] = '1';
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(API + path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
    });
  } catch {
    throw new ApiError(0, 'Network error', 'the server did not answer; is it running?');
  }
  if (res.status === 204) return null;
  const text = await res.text();
  /** @type {any} */
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const err = new ApiError(
      res.status,
      typeof data?.title === 'string' ? data.title : `HTTP ${res.status}`,
      typeof data?.detail === 'string' ? data.detail : res.statusText,
    );
    if (res.status === 401 && !opts.login) onUnauthorized(err);
    throw err;
  }
  return data;
}

/**
 * A query string from the defined, non-empty values.
 * @param {Record<string, string | number | boolean | null | undefined>} params
 */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '' && v !== false) u.set(k, String(v));
  const s = u.toString();
  return s ? `?${s}` : '';
}

const ROLES = ['viewer', 'operator', 'admin'];
/** Whether a role includes another (viewer < operator < admin). @param {string} have @param {string} need */
export function roleAtLeast(have, need) {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

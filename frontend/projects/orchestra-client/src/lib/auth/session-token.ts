import { OrchestraTokenProvider } from '../config';

export interface SessionTokenOptions {
  /** The app's own backend endpoint that mints a session (`POST`, answers `{token, expires_at}`). */
  readonly url: string;
  /** Refresh this many seconds before `expires_at` (default 30; at most half the remaining lifetime). */
  readonly refreshBeforeS?: number;
  /** Give up on a mint request after this many seconds (default 10). */
  readonly timeoutS?: number;
  /** The `fetch` to use (default: the global one). */
  readonly fetch?: typeof fetch;
  /** Extra request options (e.g. an XSRF header, or `credentials: 'include'` for a backend on another origin). */
  readonly init?: RequestInit;
}

/**
 * Why a session could not be obtained:
 * - `network_error`: the endpoint could not be reached;
 * - `timeout`: it did not answer within `timeoutS`;
 * - `http_error`: it answered an error status (401/403: the user is not signed in to the app);
 * - `bad_response`: it answered something else than `{"token": "…", "expires_at": "<ISO-8601>"}`.
 */
export type SessionTokenErrorReason = 'network_error' | 'timeout' | 'http_error' | 'bad_response';

/** A session token could not be obtained from the app's backend. `AskClient` reports it as `token_unavailable`. */
export class SessionTokenError extends Error {
  override readonly name = 'SessionTokenError';

  constructor(
    readonly reason: SessionTokenErrorReason,
    message: string,
    /** The endpoint's HTTP status, for `http_error` and `bad_response`. */
    readonly status?: number,
  ) {
    super(message);
  }
}

const DEFAULT_REFRESH_BEFORE_S = 30;
const DEFAULT_TIMEOUT_S = 10;
/** A bearer token's characters (RFC 6750 `b64token`): a JWT fits, whitespace or quotes do not. */
const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;
/** ISO-8601 date-time with an explicit offset (a date without one would be read in local time). */
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i;

/**
 * Short-lived session tokens minted by the app's own backend, for `provideOrchestra({ baseUrl, token })`:
 *
 * ```ts
 * provideOrchestra({ baseUrl, token: sessionToken({ url: '/api/orchestra/session' }) })
 * ```
 *
 * `POST url` (same-origin, with the page's cookies) must answer `{"token": "…", "expires_at": "<ISO-8601>"}`.
 * The token is cached until `refreshBeforeS` before `expires_at`; concurrent callers share one mint request;
 * a token that the browser's clock already considers (nearly) expired is used once but not cached, so a
 * skewed clock costs extra mints, never a failure. Answers that do not follow the contract are refused with
 * a `SessionTokenError` (nothing is ever sent as a bearer token that is not one).
 */
export function sessionToken(options: SessionTokenOptions): OrchestraTokenProvider {
  return new SessionTokenProvider(options);
}

interface Session {
  readonly token: string;
  /** Local time (ms) from which the token is refreshed instead of reused. */
  readonly refreshAt: number;
}

interface Mint {
  readonly promise: Promise<Session>;
  readonly abort: AbortController;
  waiters: number;
}

class SessionTokenProvider implements OrchestraTokenProvider {
  private cached: Session | null = null;
  private mint: Mint | null = null;
  private readonly refreshBeforeMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly options: SessionTokenOptions) {
    this.refreshBeforeMs = seconds(options.refreshBeforeS, DEFAULT_REFRESH_BEFORE_S, 0) * 1000;
    this.timeoutMs = seconds(options.timeoutS, DEFAULT_TIMEOUT_S, 0.001) * 1000;
  }

  async getToken(signal?: AbortSignal): Promise<string> {
    signal?.throwIfAborted();
    if (this.cached !== null && Date.now() < this.cached.refreshAt) {
      return this.cached.token;
    }
    this.cached = null;
    const mint = this.mint ?? this.startMint();
    mint.waiters++;
    try {
      return (await untilAborted(mint.promise, signal)).token;
    } finally {
      mint.waiters--;
      // The last caller gave up: stop the mint, so the next call starts afresh.
      if (mint.waiters === 0 && this.mint === mint) {
        this.mint = null;
        mint.abort.abort();
      }
    }
  }

  invalidate(token?: string): void {
    if (token === undefined) {
      this.cached = null;
      this.mint = null;
    } else if (this.cached?.token === token) {
      this.cached = null;
    }
  }

  private startMint(): Mint {
    const abort = new AbortController();
    const promise = this.fetchSession(abort.signal).then(
      (session) => {
        if (this.mint === mint) {
          this.mint = null;
          if (Date.now() < session.refreshAt) {
            this.cached = session;
          }
        }
        return session;
      },
      (error: unknown) => {
        if (this.mint === mint) {
          this.mint = null;
        }
        throw error;
      },
    );
    // Settled by its waiters; this only keeps a mint nobody waits for any more from being "unhandled".
    promise.catch(() => undefined);
    const mint: Mint = { promise, abort, waiters: 0 };
    this.mint = mint;
    return mint;
  }

  private async fetchSession(signal: AbortSignal): Promise<Session> {
    const { url, init } = this.options;
    const fetchFn = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let response: Response;
    try {
      response = await fetchFn(url, {
        method: 'POST',
        credentials: 'same-origin',
        cache: 'no-store',
        ...init,
        headers: withAccept(init?.headers),
        signal: AbortSignal.any([signal, timeout]),
      });
    } catch (error) {
      throw fetchFailure(url, error, signal, timeout);
    }
    if (!response.ok) {
      throw new SessionTokenError(
        'http_error',
        `The session endpoint ${url} answered HTTP ${response.status}.`,
        response.status,
      );
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch (error) {
      if (signal.aborted || timeout.aborted) {
        throw fetchFailure(url, error, signal, timeout);
      }
      body = undefined;
    }
    return this.toSession(url, body, response.status);
  }

  private toSession(url: string, body: unknown, status: number): Session {
    const bad = (what: string) =>
      new SessionTokenError('bad_response', `The session endpoint ${url} ${what}.`, status);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw bad('did not answer with a JSON object');
    }
    const { token, expires_at: expiresAt } = body as Record<string, unknown>;
    if (typeof token !== 'string' || !BEARER_TOKEN.test(token)) {
      throw bad('answered without a valid "token" (a non-empty string of token characters)');
    }
    const expires =
      typeof expiresAt === 'string' && ISO_DATE_TIME.test(expiresAt) ? Date.parse(expiresAt) : NaN;
    if (!Number.isFinite(expires)) {
      throw bad('answered without a valid "expires_at" (an ISO-8601 date-time with an offset)');
    }
    const now = Date.now();
    const remaining = expires - now;
    return { token, refreshAt: now + remaining - Math.min(this.refreshBeforeMs, remaining / 2) };
  }
}

function fetchFailure(
  url: string,
  error: unknown,
  signal: AbortSignal,
  timeout: AbortSignal,
): unknown {
  if (signal.aborted) {
    return error;
  }
  return timeout.aborted
    ? new SessionTokenError('timeout', `The session endpoint ${url} did not answer in time.`)
    : new SessionTokenError('network_error', `Could not reach the session endpoint ${url}.`);
}

/** Resolves like `promise`, or rejects with the signal's reason as soon as `signal` aborts. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) {
    return promise;
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

function withAccept(init: HeadersInit | undefined): Headers {
  const headers = new Headers(init);
  if (!headers.has('Accept')) {
    headers.set('Accept', 'application/json');
  }
  return headers;
}

function seconds(value: number | undefined, fallback: number, min: number): number {
  return value !== undefined && Number.isFinite(value) && value >= min ? value : fallback;
}

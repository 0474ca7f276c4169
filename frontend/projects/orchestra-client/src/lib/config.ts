import { EnvironmentProviders, InjectionToken, makeEnvironmentProviders } from '@angular/core';

/**
 * Something that hands out bearer tokens and can be told that one stopped working, e.g. `sessionToken()`.
 *
 * `getToken()` returns a usable token (from a cache or freshly obtained); it rejects when none can be had,
 * and with the signal's reason as soon as `signal` aborts. `invalidate(token)` drops `token` from the cache
 * (no-op if a newer one is cached already); `invalidate()` drops whatever is cached. On a 401
 * `token_expired` the `AskClient` invalidates the token it sent, asks for a new one and retries once.
 */
export interface OrchestraTokenProvider {
  getToken(signal?: AbortSignal): Promise<string>;
  invalidate(token?: string): void;
}

/**
 * How requests authenticate:
 * - a string: sent as is (an app token `orc_…`: only in trusted settings, never in a public page);
 * - a function: called before every request (the app caches what it returns itself); never retried;
 * - an `OrchestraTokenProvider` such as `sessionToken({ url })`: short-lived session tokens, refreshed and
 *   retried once when the gateway says `token_expired`.
 */
export type OrchestraToken = string | (() => string | Promise<string>) | OrchestraTokenProvider;

export interface OrchestraConfig {
  /** The gateway's base URL, e.g. `https://orchestra.example.com`; `""` means the page's own origin. */
  readonly baseUrl: string;
  readonly token: OrchestraToken;
  /**
   * Optional: the W3C trace context of the app's current operation (e.g. from its OpenTelemetry web SDK),
   * called before every request. A non-empty string is sent as the `traceparent` header, so the gateway's
   * span joins the app's trace; `null` (or a hook that throws) sends none.
   */
  readonly traceparent?: () => string | null;
}

export const ORCHESTRA_CONFIG = new InjectionToken<OrchestraConfig>('ORCHESTRA_CONFIG');

/** Registers the gateway for `AskClient` and `<orc-prompt>`: `providers: [provideOrchestra({ baseUrl, token })]`. */
export function provideOrchestra(config: OrchestraConfig): EnvironmentProviders {
  return makeEnvironmentProviders([{ provide: ORCHESTRA_CONFIG, useValue: config }]);
}

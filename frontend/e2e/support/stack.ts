/**
 * The servers an e2e run talks to. By default the REAL ones, laid out like `orchestra demo`: the demo's own
 * app backend (`orchestra demo-backend`: serves the built demo and its `config.json`, mints session tokens
 * with the app token it holds), the Orchestra gateway (`orchestra serve`, called by the page cross-origin)
 * and the project's OpenAI fake (`orchestra fake-openai`). `ORC_E2E_GATEWAY=stub` swaps in
 * `stub-gateway.ts`, a dependency-free stand-in for UI work without the Python side.
 */
import { startGatewayStack } from './gateway-stack.ts';
import { startStubStack } from './stub-stack.ts';
import type { LogRecord } from './gateway-logs.ts';

/** How long the sessions minted by `shortSessionOrigin`'s backend live (the gateway allows no leeway). */
export const SHORT_SESSION_TTL_S = 3;

export interface AppOptions {
  /** The app's OpenAI base URL (default: the stack's fake). */
  readonly upstream?: string;
  /** `direct` (default), `conversation` or `moderated`. */
  readonly workflow?: string;
}

export interface Stack {
  /** The demo page's origin: its app backend (the page, `config.json`, the session endpoint). */
  readonly origin: string;
  /** The same demo from a second backend whose sessions live `SHORT_SESSION_TTL_S` (null: the stub). */
  readonly shortSessionOrigin: string | null;
  /** The gateway (the page's `baseUrl`). */
  readonly gatewayUrl: string;
  /** The demo app's `orc_` token: held by its backend, never given to the page. */
  readonly token: string;
  /** A token of the demo app that was issued, then revoked. */
  revokedToken(): Promise<string>;
  /** A token of a second app limited to `rpm` requests per minute. */
  quotaLimitedToken(rpm: number): Promise<string>;
  /** The token of a new app `name` (the demo's origins allowed), with its own upstream or workflow. */
  addApp(name: string, options?: AppOptions): Promise<string>;
  /** The gateway's request log for the app of `token` (`GET /logs`), in the gateway's order. */
  logs(token: string): Promise<LogRecord[]>;
  stop(): Promise<void>;
}

export function isStub(): boolean {
  return process.env['ORC_E2E_GATEWAY'] === 'stub';
}

export function startStack(): Promise<Stack> {
  return isStub() ? startStubStack() : startGatewayStack();
}

/**
 * The servers an e2e run talks to. By default the REAL ones: the Orchestra gateway (`orchestra serve`)
 * serving the built demo, and the project's OpenAI fake (`orchestra fake-openai`). `ORC_E2E_GATEWAY=stub`
 * swaps in `stub-gateway.ts`, a dependency-free stand-in for UI work without the Python side.
 */
import { startGatewayStack } from './gateway-stack.ts';
import { startStubStack } from './stub-stack.ts';
import type { LogRecord } from './gateway-logs.ts';

export interface Stack {
  /** Serves the demo at `/` and the gateway API (one origin). */
  readonly origin: string;
  /** The demo app's working token (the one in the served `config.json`). */
  readonly token: string;
  /** A token of the demo app that was issued, then revoked. */
  revokedToken(): Promise<string>;
  /** A token of a second app limited to `rpm` requests per minute. */
  quotaLimitedToken(rpm: number): Promise<string>;
  /** The gateway's request log for the app of `token` (`GET /logs`), in the gateway's order. */
  logs(token: string): Promise<LogRecord[]>;
  stop(): Promise<void>;
}

export function startStack(): Promise<Stack> {
  return process.env['ORC_E2E_GATEWAY'] === 'stub' ? startStubStack() : startGatewayStack();
}

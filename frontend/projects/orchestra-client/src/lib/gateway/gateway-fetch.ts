import { SessionTokenError } from '../auth/session-token';
import { AskError } from '../ask/ask-events';
import { clientError } from '../ask/ask-wire';
import { errorFromResponse } from '../ask/http-errors';
import { OrchestraConfig, OrchestraToken, OrchestraTokenProvider } from '../config';

/**
 * One authenticated call to the gateway, shared by `/ask`, `/feedback` and `/conversations`: resolves the
 * bearer token, sends the request and maps every failure to an `AskError` (HTTP status + gateway body,
 * network, no token). With an `OrchestraTokenProvider`, a 401 `token_expired` invalidates the token that
 * was sent, gets a fresh one and sends the request once more. Resolves with `null` once `signal` aborted.
 */
export async function gatewayFetch(
  config: OrchestraConfig,
  path: string,
  init: { readonly method: string; readonly body?: unknown; readonly accept?: string },
  signal: AbortSignal,
): Promise<Response | AskError | null> {
  const source = config.token;
  for (let attempt = 1; ; attempt++) {
    const token = await resolveToken(source, signal);
    if (signal.aborted) {
      return null;
    }
    if (typeof token !== 'string') {
      return token;
    }
    const headers: Record<string, string> = {
      Authorization: `Bearer ${token}`,
      Accept: init.accept ?? 'application/json',
      ...traceHeaders(config.traceparent),
    };
    if (init.body !== undefined) {
      headers['Content-Type'] = 'application/json';
    }
    let response: Response;
    try {
      response = await fetch(gatewayUrl(config.baseUrl, path), {
        method: init.method,
        headers,
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        cache: 'no-store',
        signal,
      });
    } catch {
      return signal.aborted ? null : clientError('network_error', 'Could not reach the gateway.');
    }
    if (response.ok) {
      return response;
    }
    const error = await errorFromResponse(response);
    if (signal.aborted) {
      return null;
    }
    // An expired session token: drop it, get a fresh one and try once more; anything else is final.
    if (attempt === 1 && isProvider(source) && isExpiredToken(error)) {
      source.invalidate(token);
      continue;
    }
    return error;
  }
}

/** The app's trace context as a `traceparent` header; none without a hook, or when it gives nothing. */
function traceHeaders(hook: (() => string | null) | undefined): Record<string, string> {
  let value: unknown = null;
  try {
    value = hook?.();
  } catch {
    // Tracing is best effort: a failing hook never stops the call.
  }
  return typeof value === 'string' && value !== '' ? { traceparent: value } : {};
}

/** `path` (starting with `/`) under the gateway's base URL. */
export function gatewayUrl(baseUrl: string, path: string): string {
  return `${baseUrl.replace(/\/+$/, '')}${path}`;
}

export function isAskError(value: unknown): value is AskError {
  return typeof value === 'object' && value !== null && (value as AskError).type === 'error';
}

function isProvider(token: OrchestraToken): token is OrchestraTokenProvider {
  return typeof token === 'object' && token !== null;
}

function isExpiredToken(error: AskError): boolean {
  return error.status === 401 && error.code === 'token_expired';
}

/** The bearer token to send, or a `token_unavailable` error: never anything but a non-empty string. */
async function resolveToken(
  token: OrchestraToken,
  signal: AbortSignal,
): Promise<string | AskError> {
  let value: unknown;
  try {
    value = isProvider(token)
      ? await token.getToken(signal)
      : typeof token === 'function'
        ? await token()
        : token;
  } catch (error) {
    return clientError(
      'token_unavailable',
      error instanceof SessionTokenError ? error.message : 'The token function or provider failed.',
    );
  }
  return typeof value === 'string' && value !== ''
    ? value
    : clientError(
        'token_unavailable',
        'The token source gave no token (an empty or non-string value).',
      );
}

import { AskError, GatewayErrorCode } from './ask-events';
import { asObject, errorFromBody, parseObject } from './ask-wire';

/** The code an error status means when its body is not a gateway error (e.g. from a proxy). */
const CODE_BY_STATUS: Readonly<Record<number, GatewayErrorCode>> = {
  400: 'invalid_request',
  401: 'invalid_token',
  413: 'request_too_large',
  422: 'invalid_request',
  429: 'quota_exceeded',
  502: 'upstream_error',
  503: 'upstream_unavailable',
  504: 'upstream_timeout',
};

/**
 * Maps a non-2xx `/ask` response to an `AskError`: the code and message from the gateway's JSON body
 * (`{"error": {"code", "message", "request_id"}}`), else from the status; `Retry-After` to seconds.
 */
export async function errorFromResponse(
  response: Response,
  now: number = Date.now(),
): Promise<AskError> {
  const headerRequestId = response.headers.get('X-Request-Id') ?? '';
  const body = parseObject(await readText(response));
  const fromBody = body ? errorFromBody(asObject(body['error']), headerRequestId) : null;
  const statusText = response.statusText ? ` ${response.statusText}` : '';
  const base: AskError = fromBody ?? {
    type: 'error',
    code: CODE_BY_STATUS[response.status] ?? 'http_error',
    message: `The gateway answered HTTP ${response.status}${statusText}.`,
    ...(headerRequestId ? { requestId: headerRequestId } : {}),
  };
  const retryAfterSeconds = parseRetryAfter(response.headers.get('Retry-After'), now);
  return {
    ...base,
    status: response.status,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  };
}

/** IMF-fixdate, the HTTP date format servers send: `Tue, 01 Dec 2026 10:00:00 GMT`. */
const HTTP_DATE = /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** `Retry-After` as whole seconds from `now`: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(header: string | null, now: number): number | undefined {
  const value = header?.trim() ?? '';
  if (/^\d+$/.test(value)) {
    return Number(value);
  }
  const date = HTTP_DATE.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - now) / 1000));
}

async function readText(response: Response): Promise<string> {
  try {
    return await response.text();
  } catch {
    return '';
  }
}

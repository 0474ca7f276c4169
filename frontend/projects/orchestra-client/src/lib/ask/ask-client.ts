import { Injectable, inject } from '@angular/core';
import { Observable, Subscriber } from 'rxjs';

import { SessionTokenError } from '../auth/session-token';
import { ORCHESTRA_CONFIG, OrchestraToken, OrchestraTokenProvider } from '../config';
import { SseParser } from '../sse/sse-parser';
import { AskError, AskEvent, AskRequest } from './ask-events';
import { clientError, toAskEvent, toRequestBody } from './ask-wire';
import { errorFromResponse } from './http-errors';

/**
 * Posts to the gateway's `/ask` and streams the answer as typed events.
 *
 * `ask()` returns a cold Observable: each subscription sends one request. It emits every `delta` as soon as
 * its bytes arrive (fetch + `ReadableStream`, nothing buffered), then exactly one `done` or `error`, then
 * completes. Failures of any kind (HTTP status, `event: error`, network, malformed stream) arrive as an
 * `error` *event*: the Observable itself never errors. Unsubscribing before the end aborts the request
 * (`AbortController`), which the gateway records as a client disconnect.
 *
 * With an `OrchestraTokenProvider` (e.g. `sessionToken()`), a 401 `token_expired` invalidates the token
 * that was sent, gets a fresh one and sends the request once more; a second refusal is the error event.
 */
@Injectable({ providedIn: 'root' })
export class AskClient {
  private readonly config = inject(ORCHESTRA_CONFIG);

  ask(request: AskRequest): Observable<AskEvent> {
    return new Observable<AskEvent>((subscriber) => {
      const abort = new AbortController();
      void this.stream(request, abort.signal, subscriber);
      return () => abort.abort();
    });
  }

  private async stream(
    request: AskRequest,
    signal: AbortSignal,
    out: Subscriber<AskEvent>,
  ): Promise<void> {
    const source = this.config.token;
    for (let attempt = 1; ; attempt++) {
      const token = await resolveToken(source, signal);
      if (signal.aborted) {
        return;
      }
      if (typeof token !== 'string') {
        return finish(out, token);
      }
      let response: Response;
      try {
        response = await fetch(askUrl(this.config.baseUrl), {
          method: 'POST',
          headers: {
            Authorization: `Bearer ${token}`,
            'Content-Type': 'application/json',
            Accept: 'text/event-stream',
            ...traceHeaders(this.config.traceparent),
          },
          body: JSON.stringify(toRequestBody(request)),
          cache: 'no-store',
          signal,
        });
      } catch {
        return signal.aborted
          ? undefined
          : finish(out, clientError('network_error', 'Could not reach the gateway.'));
      }
      if (response.ok) {
        return readEvents(response, signal, out);
      }
      const error = await errorFromResponse(response);
      if (signal.aborted) {
        return;
      }
      // An expired session token: drop it, get a fresh one and try once more; anything else is final.
      if (attempt === 1 && isProvider(source) && isExpiredToken(error)) {
        source.invalidate(token);
        continue;
      }
      return finish(out, error);
    }
  }
}

async function readEvents(
  response: Response,
  signal: AbortSignal,
  out: Subscriber<AskEvent>,
): Promise<void> {
  const requestId = response.headers.get('X-Request-Id') ?? '';
  const contentType = response.headers.get('Content-Type') ?? '';
  if (!response.body || !contentType.includes('text/event-stream')) {
    return finish(
      out,
      clientError('bad_response', 'The gateway did not answer with an event stream.', requestId),
    );
  }
  const reader = response.body.getReader();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const messages = done ? parser.end() : parser.feed(value);
      for (const message of messages) {
        const event = toAskEvent(message, requestId);
        if (event === null) {
          continue;
        }
        if (event.type !== 'delta') {
          void reader.cancel().catch(() => undefined);
          return finish(out, event);
        }
        out.next(event);
      }
      if (done) {
        return finish(
          out,
          clientError(
            'stream_interrupted',
            'The answer stopped before it was complete.',
            requestId,
          ),
        );
      }
    }
  } catch {
    if (!signal.aborted) {
      finish(
        out,
        clientError('network_error', 'The connection to the gateway was lost.', requestId),
      );
    }
  }
}

function finish(out: Subscriber<AskEvent>, last: AskEvent): void {
  out.next(last);
  out.complete();
}

/** The app's trace context as a `traceparent` header; none without a hook, or when it gives nothing. */
function traceHeaders(hook: (() => string | null) | undefined): Record<string, string> {
  let value: unknown = null;
  try {
    value = hook?.();
  } catch {
    // Tracing is best effort: a failing hook never stops the question.
  }
  return typeof value === 'string' && value !== '' ? { traceparent: value } : {};
}

function askUrl(baseUrl: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/ask`;
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

import { Injectable, inject } from '@angular/core';
import { Observable, Subscriber } from 'rxjs';

import { ORCHESTRA_CONFIG } from '../config';
import { gatewayFetch, isAskError } from '../gateway/gateway-fetch';
import { SseParser } from '../sse/sse-parser';
import { AskEvent, AskRequest } from './ask-events';
import { clientError, toAskEvent, toRequestBody } from './ask-wire';

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
    const response = await gatewayFetch(
      this.config,
      '/ask',
      { method: 'POST', body: toRequestBody(request), accept: 'text/event-stream' },
      signal,
    );
    if (response === null) {
      return;
    }
    if (isAskError(response)) {
      return finish(out, response);
    }
    return readEvents(response, signal, out);
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

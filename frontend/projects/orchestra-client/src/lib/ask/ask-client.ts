import { Injectable, inject } from '@angular/core';
import { Observable, Subscriber, filter } from 'rxjs';

import { ORCHESTRA_CONFIG } from '../config';
import { gatewayFetch, isAskError } from '../gateway/gateway-fetch';
import { SseParser } from '../sse/sse-parser';
import { AskError, AskEvent, AskProgress, AskRequest } from './ask-events';
import { clientError, toAskEvent, toRequestBody } from './ask-wire';

/** Resume attempts when the config sets none. */
export const DEFAULT_MAX_RESUME_ATTEMPTS = 5;
/** The wait before the first resume attempt; it doubles with each further attempt. */
export const FIRST_RESUME_DELAY_MS = 500;

type Opener = (signal: AbortSignal) => Promise<Response | AskError | null>;

/** Where an answer stands, for resuming it: its id and the id of the last event delivered. */
interface Position {
  requestId: string;
  lastEventId: number;
  /** False once an event came without an id: a resume could not avoid duplicates. */
  resumable: boolean;
}

/**
 * Posts to the gateway's `/ask` and streams the answer as typed events.
 *
 * `ask()` returns a cold Observable: each subscription sends one request. It emits every `delta` as soon as
 * its bytes arrive (fetch + `ReadableStream`, nothing buffered), then exactly one `done` or `error`, then
 * completes. Failures of any kind (HTTP status, `event: error`, network, malformed stream) arrive as an
 * `error` *event*: the Observable itself never errors. Unsubscribing before the end aborts the request
 * (the gateway keeps the answer for its detach grace, then cancels it; `cancel()` stops it at once).
 *
 * When the connection breaks mid-answer, the client resumes it by itself: `GET /ask/{id}/events?after=N`
 * with the last event id it saw, after 0.5 s, 1 s, 2 s… up to `maxResumeAttempts` (default 5); events
 * it already has are skipped, so the text continues with no duplicate and no gap. With
 * `{ progress: true }` the Observable also tells when it is `connected` and `reconnecting`.
 *
 * With an `OrchestraTokenProvider` (e.g. `sessionToken()`), a 401 `token_expired` invalidates the token
 * that was sent, gets a fresh one and sends the request once more (resume requests too).
 */
@Injectable({ providedIn: 'root' })
export class AskClient {
  private readonly config = inject(ORCHESTRA_CONFIG);

  ask(request: AskRequest): Observable<AskEvent>;
  ask(request: AskRequest, options: { readonly progress: true }): Observable<AskProgress>;
  ask(request: AskRequest, options?: { readonly progress?: boolean }): Observable<AskProgress> {
    const answer = this.observe(
      (signal) =>
        gatewayFetch(
          this.config,
          '/ask',
          {
            method: 'POST',
            body: toRequestBody(request),
            accept: 'text/event-stream',
          },
          signal,
        ),
      { requestId: '', lastEventId: 0, resumable: true },
    );
    return options?.progress ? answer : answer.pipe(filter(isAnswerEvent));
  }

  /**
   * Follows an answer that is already running (e.g. started before a page reload): its events after
   * `afterEventId` (0: all of them), then the live answer, resuming as `ask()` does.
   */
  follow(requestId: string, afterEventId = 0): Observable<AskProgress> {
    const position = { requestId, lastEventId: afterEventId, resumable: true };
    return this.observe((signal) => this.resume(position, signal), position);
  }

  /** Asks the gateway to stop answer `requestId` (`POST /ask/{id}/cancel`); failures are ignored. */
  async cancel(requestId: string): Promise<void> {
    await gatewayFetch(
      this.config,
      `/ask/${encodeURIComponent(requestId)}/cancel`,
      { method: 'POST' },
      new AbortController().signal,
    );
  }

  private observe(open: Opener, position: Position): Observable<AskProgress> {
    return new Observable<AskProgress>((subscriber) => {
      const abort = new AbortController();
      void this.stream(open, position, abort.signal, subscriber);
      return () => abort.abort();
    });
  }

  private resume(position: Position, signal: AbortSignal): Promise<Response | AskError | null> {
    const path = `/ask/${encodeURIComponent(position.requestId)}/events?after=${position.lastEventId}`;
    return gatewayFetch(this.config, path, { method: 'GET', accept: 'text/event-stream' }, signal);
  }

  private async stream(
    open: Opener,
    position: Position,
    signal: AbortSignal,
    out: Subscriber<AskProgress>,
  ): Promise<void> {
    const maxAttempts = this.config.maxResumeAttempts ?? DEFAULT_MAX_RESUME_ATTEMPTS;
    let response = await open(signal);
    let broken: AskError | null = null;
    for (let attempt = 0; ;) {
      if (response === null) {
        return;
      }
      if (isAskError(response)) {
        // While resuming, an unreachable or failing gateway is worth another attempt; a refusal is not.
        if (attempt === 0 || !isTransient(response)) {
          return finish(out, response);
        }
      } else {
        position.requestId = response.headers.get('X-Request-Id') || position.requestId;
        out.next({ type: 'connected', requestId: position.requestId, resumed: attempt > 0 });
        const before = position.lastEventId;
        broken = await readEvents(response, signal, out, position);
        if (broken === null) {
          return;
        }
        if (position.lastEventId > before) {
          attempt = 0; // This connection made progress: the next break gets the full set of attempts.
        }
      }
      attempt++;
      if (attempt > maxAttempts || position.requestId === '' || !position.resumable) {
        return finish(out, broken ?? clientError('network_error', 'Could not reach the gateway.'));
      }
      const delayMs = FIRST_RESUME_DELAY_MS * 2 ** (attempt - 1);
      out.next({ type: 'reconnecting', requestId: position.requestId, attempt, delayMs });
      if (!(await pause(delayMs, signal))) {
        return;
      }
      response = await this.resume(position, signal);
    }
  }
}

/**
 * Emits the events of one connection, skipping those the client already has. Resolves with `null` once
 * the answer ended (its `done` or `error` was emitted) or the request was aborted, and with the error to
 * report if it cannot be resumed when the connection broke first.
 */
async function readEvents(
  response: Response,
  signal: AbortSignal,
  out: Subscriber<AskProgress>,
  position: Position,
): Promise<AskError | null> {
  const requestId = position.requestId;
  const contentType = response.headers.get('Content-Type') ?? '';
  if (!response.body || !contentType.includes('text/event-stream')) {
    finish(
      out,
      clientError('bad_response', 'The gateway did not answer with an event stream.', requestId),
    );
    return null;
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
        const eventId = /^\d{1,9}$/.test(message.id) ? Number(message.id) : null;
        if (eventId === null) {
          position.resumable = false;
        } else if (eventId <= position.lastEventId) {
          continue; // Replayed after a resume: already delivered.
        } else {
          position.lastEventId = eventId;
        }
        if (event.type !== 'delta') {
          void reader.cancel().catch(() => undefined);
          finish(out, event);
          return null;
        }
        out.next(eventId === null ? event : { ...event, eventId });
      }
      if (done) {
        return clientError(
          'stream_interrupted',
          'The answer stopped before it was complete.',
          requestId,
        );
      }
    }
  } catch {
    return signal.aborted
      ? null
      : clientError('network_error', 'The connection to the gateway was lost.', requestId);
  }
}

function isAnswerEvent(event: AskProgress): event is AskEvent {
  return event.type === 'delta' || event.type === 'done' || event.type === 'error';
}

/** Errors a later resume attempt may get past: no connection, or a gateway/proxy failing for now. */
function isTransient(error: AskError): boolean {
  return error.code === 'network_error' || (error.status !== undefined && error.status >= 500);
}

/** Waits `ms`; resolves `false` at once if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function finish(out: Subscriber<AskProgress>, last: AskEvent): void {
  out.next(last);
  out.complete();
}

import { DestroyRef, Injectable, computed, inject, signal } from '@angular/core';
import { Observable, Subscription } from 'rxjs';

import { AskClient } from './ask-client';
import { AskError, AskProgress, AskRequest, AskUsage } from './ask-events';

export type AskStatus =
  'idle' | 'loading' | 'streaming' | 'reconnecting' | 'done' | 'error' | 'cancelled';

/** A running answer, as much as a page needs to pick it up again after a reload. */
export interface RunningAnswer {
  readonly requestId: string;
  /** The id of the last event shown (0: none yet). */
  readonly lastEventId: number;
}

/**
 * The state of one prompt's answer, as signals: `idle → loading → streaming → done | error | cancelled`,
 * with `reconnecting` while a broken connection is being resumed (`AskClient` does it by itself).
 *
 * `loading` lasts until the first non-empty delta; the answer then grows in `text`. Provide it per component
 * (`providers: [AskSession]`) so each prompt has its own stream. On destroy the stream is dropped but the
 * answer is not cancelled on the gateway, so a page that comes back can `follow()` it; `cancel()`, a new
 * `start()` and `reset()` do cancel it there (`POST /ask/{id}/cancel`).
 */
@Injectable()
export class AskSession {
  private readonly client = inject(AskClient);

  private readonly statusState = signal<AskStatus>('idle');
  private readonly textState = signal('');
  private readonly errorState = signal<AskError | null>(null);
  private readonly usageState = signal<AskUsage | null>(null);
  private readonly requestIdState = signal<string | null>(null);
  private readonly runningState = signal<RunningAnswer | null>(null);
  private lastRequest: AskRequest | null = null;
  private subscription: Subscription | null = null;

  readonly status = this.statusState.asReadonly();
  readonly text = this.textState.asReadonly();
  readonly error = this.errorState.asReadonly();
  readonly usage = this.usageState.asReadonly();
  /** The gateway's id of the finished answer (from its `done` event): what feedback refers to. */
  readonly requestId = this.requestIdState.asReadonly();
  /** A request is in flight (cancel makes sense, send does not). */
  readonly busy = computed(() => {
    const status = this.status();
    return status === 'loading' || status === 'streaming' || status === 'reconnecting';
  });
  /** The answer in progress, once the gateway named it; `null` when none is running. */
  readonly running = this.runningState.asReadonly();
  readonly canRetry = computed(() => this.status() === 'error' || this.status() === 'cancelled');

  constructor() {
    inject(DestroyRef).onDestroy(() => this.subscription?.unsubscribe());
  }

  /** Sends `request`, replacing (and aborting) any answer in progress. */
  start(request: AskRequest): void {
    this.stop();
    this.lastRequest = request;
    this.subscribe(this.client.ask(request, { progress: true }));
  }

  /** Picks up answer `requestId` that is still running (e.g. after a page reload): all its text so far, then the rest. */
  follow(requestId: string): void {
    this.stop();
    this.lastRequest = null;
    this.subscribe(this.client.follow(requestId));
  }

  /** Sends the last request again. */
  retry(): void {
    if (this.lastRequest !== null && !this.busy()) {
      this.start(this.lastRequest);
    }
  }

  /** Stops the answer in progress (aborting the request, and cancelling it on the gateway); keeps what arrived so far. */
  cancel(): void {
    if (!this.busy()) {
      return;
    }
    this.stop();
    this.statusState.set('cancelled');
  }

  /** Stops any answer in progress and forgets it: back to `idle`, with no text, error, usage or retry. */
  reset(): void {
    this.stop();
    this.lastRequest = null;
    this.textState.set('');
    this.errorState.set(null);
    this.usageState.set(null);
    this.requestIdState.set(null);
    this.statusState.set('idle');
  }

  private subscribe(answer: Observable<AskProgress>): void {
    this.textState.set('');
    this.errorState.set(null);
    this.usageState.set(null);
    this.requestIdState.set(null);
    this.statusState.set('loading');
    this.subscription = answer.subscribe((event) => this.apply(event));
  }

  /** Drops the stream; an answer still running on the gateway is cancelled there too. */
  private stop(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    const running = this.runningState();
    if (running !== null && this.busy()) {
      void this.client.cancel(running.requestId).catch(() => undefined);
    }
    this.runningState.set(null);
  }

  private apply(event: AskProgress): void {
    switch (event.type) {
      case 'connected':
        this.runningState.update((running) =>
          running?.requestId === event.requestId
            ? running
            : { requestId: event.requestId, lastEventId: 0 },
        );
        if (this.status() === 'reconnecting') {
          this.statusState.set(this.textState() === '' ? 'loading' : 'streaming');
        }
        break;
      case 'reconnecting':
        this.statusState.set('reconnecting');
        break;
      case 'delta': {
        const eventId = event.eventId;
        if (eventId !== undefined) {
          this.runningState.update((running) => running && { ...running, lastEventId: eventId });
        }
        if (event.text !== '') {
          this.textState.update((text) => text + event.text);
          this.statusState.set('streaming');
        }
        break;
      }
      case 'done':
        this.runningState.set(null);
        this.usageState.set(event.usage);
        this.requestIdState.set(event.requestId || null);
        this.statusState.set('done');
        break;
      case 'error':
        this.runningState.set(null);
        this.errorState.set(event);
        this.statusState.set('error');
        break;
    }
  }
}

import { DestroyRef, Injectable, computed, inject, signal } from '@angular/core';
import { Subscription } from 'rxjs';

import { AskClient } from './ask-client';
import { AskError, AskEvent, AskRequest, AskUsage } from './ask-events';

export type AskStatus = 'idle' | 'loading' | 'streaming' | 'done' | 'error' | 'cancelled';

/**
 * The state of one prompt's answer, as signals: `idle → loading → streaming → done | error | cancelled`.
 *
 * `loading` lasts until the first non-empty delta; the answer then grows in `text`. Provide it per component
 * (`providers: [AskSession]`) so each prompt has its own stream; the stream is cancelled on destroy.
 */
@Injectable()
export class AskSession {
  private readonly client = inject(AskClient);

  private readonly statusState = signal<AskStatus>('idle');
  private readonly textState = signal('');
  private readonly errorState = signal<AskError | null>(null);
  private readonly usageState = signal<AskUsage | null>(null);
  private readonly requestIdState = signal<string | null>(null);
  private lastRequest: AskRequest | null = null;
  private subscription: Subscription | null = null;

  readonly status = this.statusState.asReadonly();
  readonly text = this.textState.asReadonly();
  readonly error = this.errorState.asReadonly();
  readonly usage = this.usageState.asReadonly();
  /** The gateway's id of the finished answer (from its `done` event): what feedback refers to. */
  readonly requestId = this.requestIdState.asReadonly();
  /** A request is in flight (cancel makes sense, send does not). */
  readonly busy = computed(() => this.status() === 'loading' || this.status() === 'streaming');
  readonly canRetry = computed(() => this.status() === 'error' || this.status() === 'cancelled');

  constructor() {
    inject(DestroyRef).onDestroy(() => this.subscription?.unsubscribe());
  }

  /** Sends `request`, replacing (and aborting) any answer in progress. */
  start(request: AskRequest): void {
    this.subscription?.unsubscribe();
    this.lastRequest = request;
    this.textState.set('');
    this.errorState.set(null);
    this.usageState.set(null);
    this.requestIdState.set(null);
    this.statusState.set('loading');
    this.subscription = this.client.ask(request).subscribe((event) => this.apply(event));
  }

  /** Sends the last request again. */
  retry(): void {
    if (this.lastRequest !== null && !this.busy()) {
      this.start(this.lastRequest);
    }
  }

  /** Stops the answer in progress (aborting the request); keeps what arrived so far. */
  cancel(): void {
    if (!this.busy()) {
      return;
    }
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.statusState.set('cancelled');
  }

  /** Stops any answer in progress and forgets it: back to `idle`, with no text, error, usage or retry. */
  reset(): void {
    this.subscription?.unsubscribe();
    this.subscription = null;
    this.lastRequest = null;
    this.textState.set('');
    this.errorState.set(null);
    this.usageState.set(null);
    this.requestIdState.set(null);
    this.statusState.set('idle');
  }

  private apply(event: AskEvent): void {
    switch (event.type) {
      case 'delta':
        if (event.text !== '') {
          this.textState.update((text) => text + event.text);
          this.statusState.set('streaming');
        }
        break;
      case 'done':
        this.usageState.set(event.usage);
        this.requestIdState.set(event.requestId || null);
        this.statusState.set('done');
        break;
      case 'error':
        this.errorState.set(event);
        this.statusState.set('error');
        break;
    }
  }
}

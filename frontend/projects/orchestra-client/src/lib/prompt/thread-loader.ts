import { DestroyRef, Injectable, Injector, inject, signal } from '@angular/core';

import { AskError } from '../ask/ask-events';
import { ConversationClient } from '../conversation/conversation-client';
import { describeAskError } from './error-text';

/** One message of the visible conversation thread (conversation mode). */
export interface ThreadItem {
  readonly role: 'user' | 'assistant';
  readonly text: string;
  /** The answer's request id, for feedback (absent for messages restored from the gateway). */
  readonly requestId?: string;
}
export type ThreadStatus = 'idle' | 'loading' | 'error';

/**
 * The thread shown above `<orc-prompt>`'s answer: the exchanges finished here, after the ones loaded from
 * `GET /conversations/{id}` when the app hands over an id. Provided per component.
 */
@Injectable()
export class ThreadLoader {
  // Resolved on first load: an app that never restores a thread (or mocks AskClient in its tests) needs
  // no ORCHESTRA_CONFIG for it.
  private readonly injector = inject(Injector);
  private readonly itemsState = signal<readonly ThreadItem[]>([]);
  private readonly statusState = signal<ThreadStatus>('idle');
  private readonly errorState = signal('');
  /** The conversation whose thread `items` holds. */
  private current: string | null = null;
  private abort: AbortController | null = null;

  readonly items = this.itemsState.asReadonly();
  readonly status = this.statusState.asReadonly();
  /** Why loading failed, in words. */
  readonly error = this.errorState.asReadonly();

  constructor() {
    inject(DestroyRef).onDestroy(() => this.abort?.abort());
  }

  /** Whether `id` is the conversation shown (no load needed). */
  shows(id: string | null): boolean {
    return id === this.current;
  }

  /** Shows `id` as a conversation started here (nothing to load): an empty thread, or `null` for none. */
  adopt(id: string | null): void {
    if (id !== this.current) {
      this.switchTo(id);
    }
  }

  /** Shows the thread of `id`, loaded from the gateway (an unknown id is an empty thread). */
  load(id: string): void {
    if (id === this.current) {
      return;
    }
    const abort = this.switchTo(id);
    this.statusState.set('loading');
    const client = this.injector.get(ConversationClient);
    void client.thread(id, abort.signal).then((result) => {
      if (result === null || abort.signal.aborted) {
        return;
      }
      if (isError(result)) {
        this.errorState.set(describeAskError(result));
        this.statusState.set('error');
        return;
      }
      const loaded = result.map(({ role, text }): ThreadItem => ({ role, text }));
      this.itemsState.update((since) => [...loaded, ...since]);
      this.statusState.set('idle');
    });
  }

  append(...items: ThreadItem[]): void {
    this.itemsState.update((previous) => [...previous, ...items]);
  }

  private switchTo(id: string | null): AbortController {
    this.abort?.abort();
    this.abort = new AbortController();
    this.current = id;
    this.itemsState.set([]);
    this.errorState.set('');
    this.statusState.set('idle');
    return this.abort;
  }
}

function isError(value: unknown): value is AskError {
  return !Array.isArray(value);
}

import {
  ChangeDetectionStrategy,
  Component,
  booleanAttribute,
  computed,
  inject,
  input,
  signal,
} from '@angular/core';

import { AskSession, AskStatus } from '../ask/ask-session';
import { describeAskError } from './error-text';

const STATUS_TEXT: Readonly<Record<AskStatus, string>> = {
  idle: 'Ready',
  loading: 'Waiting for the answer…',
  streaming: 'Answering…',
  done: 'Done',
  error: 'Failed',
  cancelled: 'Cancelled',
};

/** One message of the visible conversation thread (conversation mode). */
export interface ThreadItem {
  readonly role: 'user' | 'assistant';
  readonly text: string;
}

/**
 * `<orc-prompt>`: a prompt box whose answer streams in place. Enter sends, Shift+Enter adds a line, Escape
 * (or the Cancel button) stops the answer. The answer is rendered as text, never as HTML.
 *
 * With `conversation` on, every request carries the same `conversationId` (created on the first send), the
 * previous exchanges are shown above the answer, and a "New conversation" button starts over.
 *
 * Stable hooks (`data-testid`): `prompt-input`, `send-button`, `cancel-button`, `answer`, `status` (with
 * `data-status="idle|loading|streaming|done|error|cancelled"`), `error` (with `data-code`), `retry-button`,
 * `usage`; in conversation mode also `new-conversation`, `thread` and `thread-item` (with
 * `data-role="user|assistant"`).
 */
@Component({
  selector: 'orc-prompt',
  templateUrl: './prompt.html',
  styleUrl: './prompt.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
  providers: [AskSession],
})
export class Prompt {
  /** The visible label of the prompt box. */
  readonly label = input('Prompt');
  readonly placeholder = input('Ask something…');
  /** Sent as the request's `model`; the gateway's default when unset. */
  readonly model = input<string>();
  /** Conversation mode: keep a `conversationId` across sends and show the thread. Off by default. */
  readonly conversation = input(false, { transform: booleanAttribute });

  protected readonly session = inject(AskSession);
  protected readonly draft = signal('');
  protected readonly canSend = computed(() => this.draft().trim() !== '' && !this.session.busy());
  protected readonly statusText = computed(() => STATUS_TEXT[this.session.status()]);
  protected readonly errorText = computed(() => {
    const error = this.session.error();
    return error ? describeAskError(error) : '';
  });

  /** The id sent with every request in conversation mode; `null` until the first send. */
  protected readonly conversationId = signal<string | null>(null);
  /** The finished exchanges before the current one (conversation mode). */
  protected readonly thread = signal<readonly ThreadItem[]>([]);
  /** The prompt of the exchange shown in the answer region (conversation mode). */
  private currentPrompt: string | null = null;

  protected send(): void {
    if (!this.canSend()) {
      return;
    }
    const model = this.model();
    const prompt = this.draft().trim();
    if (!this.conversation()) {
      this.session.start(model ? { prompt, model } : { prompt });
      return;
    }
    this.archiveCurrentExchange();
    const conversationId = this.conversationId() ?? newConversationId();
    this.conversationId.set(conversationId);
    this.currentPrompt = prompt;
    this.session.start(model ? { prompt, model, conversationId } : { prompt, conversationId });
  }

  /** Forgets the thread and its id (aborting an answer in progress); the next send starts a new one. */
  protected newConversation(): void {
    this.session.reset();
    this.currentPrompt = null;
    this.thread.set([]);
    this.conversationId.set(null);
  }

  protected onInput(event: Event): void {
    this.draft.set((event.target as HTMLTextAreaElement).value);
  }

  protected onKeydown(event: KeyboardEvent): void {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.send();
    } else if (event.key === 'Escape' && this.session.busy()) {
      event.preventDefault();
      this.session.cancel();
    }
  }

  /** Moves the exchange on screen into the thread, if it finished (failed or cancelled ones are dropped). */
  private archiveCurrentExchange(): void {
    if (this.currentPrompt !== null && this.session.status() === 'done') {
      const user: ThreadItem = { role: 'user', text: this.currentPrompt };
      const assistant: ThreadItem = { role: 'assistant', text: this.session.text() };
      this.thread.update((items) => [...items, user, assistant]);
    }
    this.currentPrompt = null;
  }
}

function newConversationId(): string {
  if (typeof crypto.randomUUID === 'function') {
    return crypto.randomUUID();
  }
  // randomUUID needs a secure context (https or localhost); fall back to random hex elsewhere.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) =>
    byte.toString(16).padStart(2, '0'),
  ).join('');
}

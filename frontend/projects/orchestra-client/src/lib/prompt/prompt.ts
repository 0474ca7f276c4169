import {
  ChangeDetectionStrategy,
  OnInit,
  Component,
  booleanAttribute,
  computed,
  effect,
  inject,
  input,
  model,
  signal,
  untracked,
} from '@angular/core';

import { AskSession, AskStatus } from '../ask/ask-session';
import { Feedback } from '../feedback/feedback';
import { FeedbackScore } from '../feedback/feedback-client';
import { Markdown } from '../markdown/markdown';
import { describeAskError } from './error-text';
import { readRunningAnswer, writeRunningAnswer } from './running-answer-store';
import { ThreadLoader } from './thread-loader';

export type { ThreadItem } from './thread-loader';

const STATUS_TEXT: Readonly<Record<AskStatus, string>> = {
  idle: 'Ready',
  loading: 'Waiting for the answer…',
  streaming: 'Answering…',
  reconnecting: 'Connection lost, reconnecting…',
  done: 'Done',
  error: 'Failed',
  cancelled: 'Cancelled',
};

/** How answers are shown: Markdown rendered safely (default), or plain text. */
export type PromptFormat = 'markdown' | 'text';

/**
 * `<orc-prompt>`: a prompt box whose answer streams in place. Enter sends, Shift+Enter adds a line, Escape
 * (or the Cancel button) stops the answer. The answer is rendered as Markdown while it streams (safely:
 * raw HTML shows as text; see `Markdown`), or as plain text with `format="text"`. A finished answer gets
 * 👍/👎 feedback (`Feedback`).
 *
 * With `conversation` on, every request carries the same `conversationId` (created on the first send, or
 * given by the app: then its thread is loaded from the gateway), the previous exchanges are shown above
 * the answer, and a "New conversation" button starts over. `conversationIdChange` tells the app the id.
 *
 * Stable hooks (`data-testid`): `prompt-input`, `send-button`, `cancel-button`, `answer`, `status` (with
 * `data-status="idle|loading|streaming|reconnecting|done|error|cancelled"`), `error` (with `data-code`), `retry-button`,
 * `usage`; in conversation mode also `new-conversation`, `thread` and `thread-item` (with
 * `data-role="user|assistant"`).
 */
@Component({
  selector: 'orc-prompt',
  templateUrl: './prompt.html',
  styleUrl: './prompt.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
  imports: [Markdown, Feedback],
  providers: [AskSession, ThreadLoader],
})
export class Prompt implements OnInit {
  /** The visible label of the prompt box. */
  readonly label = input('Prompt');
  readonly placeholder = input('Ask something…');
  /** Sent as the request's `model`; the gateway's default when unset. */
  readonly model = input<string>();
  /** Conversation mode: keep a `conversationId` across sends and show the thread. Off by default. */
  readonly conversation = input(false, { transform: booleanAttribute });
  /** `markdown` (default) or `text`. */
  readonly format = input<PromptFormat>('markdown');
  /**
   * The conversation (conversation mode): set it to continue a thread (loaded from the gateway on start);
   * it changes on the first send of a new conversation and to `null` on "New conversation".
   */
  readonly conversationId = model<string | null>(null);
  /**
   * The `sessionStorage` key under which the running answer (request id, last event id) is kept, so that
   * a reload during an answer picks it up again; give each prompt of a page its own. `""` keeps nothing.
   */
  readonly resumeKey = input('orc-prompt');

  protected readonly session = inject(AskSession);
  protected readonly draft = signal('');
  protected readonly canSend = computed(
    () => this.draft().trim() !== '' && !this.session.busy() && this.threads.status() !== 'loading',
  );
  protected readonly statusText = computed(() => STATUS_TEXT[this.session.status()]);
  protected readonly errorText = computed(() => {
    const error = this.session.error();
    return error ? describeAskError(error) : '';
  });

  /** Loads the thread of an app-given `conversationId`, and holds the exchanges before the current one. */
  protected readonly threads = inject(ThreadLoader);
  protected readonly thread = this.threads.items;
  /** Ratings given so far, by request id (kept when an answer moves into the thread). */
  protected readonly ratings = signal<ReadonlyMap<string, FeedbackScore>>(new Map());
  /** Set once a running answer kept by a previous page was looked for (and then followed). */
  private readonly restored = signal(false);
  /** The prompt of the exchange shown in the answer region (conversation mode). */
  private currentPrompt: string | null = null;
  /** Whether the conversation id was looked at yet (the first time is the page's start). */
  private threadLoaded = false;

  constructor() {
    // Keep the running answer for a reload; cleared when it ends (done, error, cancelled).
    effect(() => {
      const key = this.resumeKey();
      const running = this.session.running();
      if (key !== '' && this.restored()) {
        writeRunningAnswer(key, running);
      }
    });
    // An id from the app (on start, or switched later) that is not the thread shown: load its thread.
    effect(() => {
      const id = this.conversationId();
      if (!this.conversation()) {
        return;
      }
      untracked(() => {
        const first = !this.threadLoaded;
        this.threadLoaded = true;
        if (this.threads.shows(id)) {
          return;
        }
        // The page's first load only fills the thread: an answer picked up after a reload
        // (ngOnInit) goes on below it.
        if (!first) {
          this.session.reset();
          this.currentPrompt = null;
        }
        if (id === null) {
          this.threads.adopt(null);
        } else {
          this.threads.load(id);
        }
      });
    });
  }

  ngOnInit(): void {
    const key = this.resumeKey();
    const running = key === '' ? null : readRunningAnswer(key);
    if (running !== null) {
      // The text before the reload is gone with the page: replay the answer from its first event.
      this.session.follow(running.requestId);
    }
    this.restored.set(true);
  }

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
    this.threads.adopt(conversationId);
    this.conversationId.set(conversationId);
    this.currentPrompt = prompt;
    this.session.start(model ? { prompt, model, conversationId } : { prompt, conversationId });
  }

  /** Forgets the thread and its id (aborting an answer in progress); the next send starts a new one. */
  protected newConversation(): void {
    this.session.reset();
    this.currentPrompt = null;
    this.threads.adopt(null);
    this.conversationId.set(null);
  }

  protected rated(requestId: string, score: FeedbackScore | null): void {
    if (score !== null) {
      this.ratings.update((ratings) => new Map(ratings).set(requestId, score));
    }
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
      const requestId = this.session.requestId();
      this.threads.append(
        { role: 'user', text: this.currentPrompt },
        { role: 'assistant', text: this.session.text(), ...(requestId ? { requestId } : {}) },
      );
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

import { ChangeDetectionStrategy, Component, computed, inject, input, signal } from '@angular/core';

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

/**
 * `<orc-prompt>`: a prompt box whose answer streams in place. Enter sends, Shift+Enter adds a line, Escape
 * (or the Cancel button) stops the answer. The answer is rendered as text, never as HTML.
 *
 * Stable hooks (`data-testid`): `prompt-input`, `send-button`, `cancel-button`, `answer`, `status` (with
 * `data-status="idle|loading|streaming|done|error|cancelled"`), `error` (with `data-code`), `retry-button`,
 * `usage`.
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

  protected readonly session = inject(AskSession);
  protected readonly draft = signal('');
  protected readonly canSend = computed(() => this.draft().trim() !== '' && !this.session.busy());
  protected readonly statusText = computed(() => STATUS_TEXT[this.session.status()]);
  protected readonly errorText = computed(() => {
    const error = this.session.error();
    return error ? describeAskError(error) : '';
  });

  protected send(): void {
    if (!this.canSend()) {
      return;
    }
    const model = this.model();
    const prompt = this.draft().trim();
    this.session.start(model ? { prompt, model } : { prompt });
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
}

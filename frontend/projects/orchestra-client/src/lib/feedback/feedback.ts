import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  Injector,
  computed,
  inject,
  input,
  model,
  signal,
} from '@angular/core';

import { describeAskError } from '../prompt/error-text';
import { FEEDBACK_COMMENT_MAX, FeedbackClient, FeedbackScore } from './feedback-client';

type FeedbackState = 'idle' | 'sending' | 'saved' | 'error';

/**
 * `<orc-feedback [requestId]="id" [(score)]="score">`: 👍/👎 (thumb icons) for one finished answer, then an optional
 * comment. The chosen button is `aria-pressed="true"`; choosing the other one replaces the rating (the
 * gateway keeps the last one). A failed save puts the buttons back to the last saved rating.
 *
 * Hooks (`data-testid`): `feedback-up`, `feedback-down`, `feedback-comment` (the text box, once rated),
 * `feedback-send-comment`, `feedback-status` (with `data-state="sending|saved|error"`).
 */
@Component({
  selector: 'orc-feedback',
  templateUrl: './feedback.html',
  styleUrl: './feedback.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class Feedback {
  readonly requestId = input.required<string>();
  /** The saved rating (two-way: the parent keeps it when this view goes away). */
  readonly score = model<FeedbackScore | null>(null);

  protected readonly maxComment = FEEDBACK_COMMENT_MAX;
  protected readonly state = signal<FeedbackState>('idle');
  protected readonly errorText = signal('');
  protected readonly comment = signal('');
  /** What the buttons show: the rating being sent, else the saved one. */
  protected readonly shown = computed(() => this.pending() ?? this.score());

  // Resolved on first rating, like ThreadLoader's client: showing the buttons needs no configuration.
  private readonly injector = inject(Injector);
  private readonly pending = signal<FeedbackScore | null>(null);
  private readonly abort = new AbortController();

  constructor() {
    inject(DestroyRef).onDestroy(() => this.abort.abort());
  }

  protected choose(score: FeedbackScore): void {
    if (this.state() !== 'sending' && score !== this.shown()) {
      void this.save(score);
    }
  }

  protected sendComment(): void {
    const score = this.score();
    if (score !== null && this.state() !== 'sending') {
      void this.save(score);
    }
  }

  protected onComment(event: Event): void {
    this.comment.set((event.target as HTMLTextAreaElement).value);
  }

  private async save(score: FeedbackScore): Promise<void> {
    this.pending.set(score);
    this.state.set('sending');
    const error = await this.injector
      .get(FeedbackClient)
      .rate(this.requestId(), score, this.comment(), this.abort.signal);
    if (this.abort.signal.aborted) {
      return;
    }
    this.pending.set(null);
    if (error === null) {
      this.score.set(score);
      this.state.set('saved');
    } else {
      this.errorText.set(describeAskError(error));
      this.state.set('error');
    }
  }
}

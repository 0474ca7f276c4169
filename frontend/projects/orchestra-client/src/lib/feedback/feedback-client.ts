import { Injectable, inject } from '@angular/core';

import { AskError } from '../ask/ask-events';
import { ORCHESTRA_CONFIG } from '../config';
import { gatewayFetch, isAskError } from '../gateway/gateway-fetch';

/** A rating: `1` a good answer, `-1` a bad one. */
export type FeedbackScore = 1 | -1;

/** The gateway's limit on a feedback comment, in characters. */
export const FEEDBACK_COMMENT_MAX = 2000;

/**
 * Rates an answer: `POST /feedback {"request_id", "score", "comment"?}` → 204. Only the app (and user) that
 * asked may rate it; rating again replaces the earlier rating. Resolves with `null` on success, else with
 * the error (never rejects).
 */
@Injectable({ providedIn: 'root' })
export class FeedbackClient {
  private readonly config = inject(ORCHESTRA_CONFIG);

  async rate(
    requestId: string,
    score: FeedbackScore,
    comment?: string,
    signal: AbortSignal = new AbortController().signal,
  ): Promise<AskError | null> {
    const trimmed = comment?.trim() ?? '';
    const body = {
      request_id: requestId,
      score,
      ...(trimmed === '' ? {} : { comment: trimmed.slice(0, FEEDBACK_COMMENT_MAX) }),
    };
    const result = await gatewayFetch(this.config, '/feedback', { method: 'POST', body }, signal);
    return isAskError(result) ? result : null;
  }
}

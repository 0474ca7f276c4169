import { RunningAnswer } from '../ask/ask-session';

/**
 * The answer a prompt is receiving, kept in `sessionStorage` (this tab only, gone with it) so that a
 * reload can pick it up again. Storage can be missing or full (private modes, quotas): then nothing is
 * kept, and a reload simply loses the answer as it would without this.
 */
export function readRunningAnswer(key: string): RunningAnswer | null {
  try {
    const raw = sessionStorage.getItem(key);
    const value: unknown = raw === null ? null : JSON.parse(raw);
    if (typeof value !== 'object' || value === null) {
      return null;
    }
    const { requestId, lastEventId } = value as Record<string, unknown>;
    return typeof requestId === 'string' && requestId !== '' && typeof lastEventId === 'number'
      ? { requestId, lastEventId }
      : null;
  } catch {
    return null;
  }
}

export function writeRunningAnswer(key: string, running: RunningAnswer | null): void {
  try {
    if (running === null) {
      sessionStorage.removeItem(key);
    } else {
      sessionStorage.setItem(key, JSON.stringify(running));
    }
  } catch {
    // Best effort: see above.
  }
}

/**
 * Types of the gateway's `POST /ask` contract, as seen by an app.
 *
 * The wire format is snake_case (`request_id`, `prompt_tokens`); these types are the camelCase view that
 * `AskClient` emits. A stream is zero or more `delta` events followed by exactly one `done` or `error`.
 */

export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

interface AskOptions {
  readonly model?: string;
  readonly temperature?: number;
  readonly maxTokens?: number;
  readonly conversationId?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** What to ask: a single prompt or a whole conversation, plus optional settings. */
export type AskRequest =
  | (AskOptions & { readonly prompt: string; readonly messages?: never })
  | (AskOptions & { readonly messages: readonly ChatMessage[]; readonly prompt?: never });

export interface AskUsage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
}

/** One piece of the answer, emitted as soon as the gateway forwards it. */
export interface AskDelta {
  readonly type: 'delta';
  readonly text: string;
  /** The event's `id` in its answer (1, 2, 3…), when the gateway sent one: where a resume starts from. */
  readonly eventId?: number;
}

/** The answer is complete. */
export interface AskDone {
  readonly type: 'done';
  readonly requestId: string;
  readonly finishReason: string;
  readonly model: string;
  readonly usage: AskUsage;
}

/** Error codes the gateway sends, before the stream (HTTP status + JSON) or inside it (`event: error`). */
export type GatewayErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'token_expired'
  | 'insufficient_scope'
  | 'app_disabled'
  | 'origin_not_allowed'
  | 'request_too_large'
  | 'quota_exceeded'
  | 'upstream_error'
  | 'upstream_auth_failed'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'identity_provider_unavailable'
  | 'cancelled'
  | 'not_found'
  | 'stream_expired';

/**
 * Error codes produced by the client itself:
 * - `network_error`: the request could not be sent or the connection broke (also: blocked by CORS);
 * - `stream_interrupted`: the stream ended without a `done` or `error` event;
 * - `bad_response`: the gateway answered something that does not follow the contract;
 * - `token_unavailable`: no token could be had (the token function threw, rejected or gave no string; the
 *   session endpoint failed or answered something invalid);
 * - `http_error`: an error status without a recognisable gateway error body.
 */
export type ClientErrorCode =
  'network_error' | 'stream_interrupted' | 'bad_response' | 'token_unavailable' | 'http_error';

/** Known codes, plus any string a newer gateway may send. */
export type AskErrorCode = GatewayErrorCode | ClientErrorCode | (string & {});

/** The request failed; always the last event of its stream. */
export interface AskError {
  readonly type: 'error';
  readonly code: AskErrorCode;
  readonly message: string;
  /** The gateway's request id (body, event or `X-Request-Id` header), when known. */
  readonly requestId?: string;
  /** The HTTP status, for errors returned before the stream started. */
  readonly status?: number;
  /** Seconds to wait before retrying, from `Retry-After` (set for `quota_exceeded`). */
  readonly retryAfterSeconds?: number;
}

export type AskEvent = AskDelta | AskDone | AskError;

/** Progress of the connection (only with `ask(request, { progress: true })` and `follow()`). */
export interface AskConnected {
  readonly type: 'connected';
  /** The answer's id (`X-Request-Id`): what `follow()` and `cancel()` take. */
  readonly requestId: string;
  /** `true` when this connection resumed the answer after a network error. */
  readonly resumed: boolean;
}

/** The connection broke mid-answer; the client reconnects after `delayMs` (attempt 1, 2…). */
export interface AskReconnecting {
  readonly type: 'reconnecting';
  readonly requestId: string;
  readonly attempt: number;
  readonly delayMs: number;
}

export type AskProgress = AskEvent | AskConnected | AskReconnecting;

import { SseMessage } from '../sse/sse-parser';
import { AskError, AskEvent, AskRequest, ClientErrorCode } from './ask-events';

/** SSE event names of the `/ask` stream (a contract with the gateway's `http/sse.py`). */
export const ASK_SSE_EVENTS = { delta: 'delta', done: 'done', error: 'error' } as const;

type Json = Record<string, unknown>;

/** The JSON body of `POST /ask` (snake_case on the wire). Absent options are left out. */
export function toRequestBody(request: AskRequest): Json {
  const body: Json =
    request.messages !== undefined ? { messages: request.messages } : { prompt: request.prompt };
  const options: Json = {
    model: request.model,
    temperature: request.temperature,
    max_tokens: request.maxTokens,
    conversation_id: request.conversationId,
    metadata: request.metadata,
  };
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) {
      body[key] = value;
    }
  }
  return body;
}

export function clientError(code: ClientErrorCode, message: string, requestId?: string): AskError {
  return requestId ? { type: 'error', code, message, requestId } : { type: 'error', code, message };
}

/**
 * Maps one SSE message of the `/ask` stream to a typed event. Returns `null` for events this client does
 * not know (ignored, so the gateway can add events), and a `bad_response` error for a malformed payload.
 */
export function toAskEvent(message: SseMessage, headerRequestId: string): AskEvent | null {
  const known = Object.values(ASK_SSE_EVENTS) as string[];
  if (!known.includes(message.event)) {
    return null;
  }
  const payload = parseObject(message.data);
  if (payload === null) {
    return clientError(
      'bad_response',
      `Malformed "${message.event}" event from the gateway.`,
      headerRequestId,
    );
  }
  switch (message.event) {
    case ASK_SSE_EVENTS.delta:
      return typeof payload['text'] === 'string'
        ? { type: 'delta', text: payload['text'] }
        : clientError('bad_response', 'A "delta" event without text.', headerRequestId);
    case ASK_SSE_EVENTS.done: {
      const usage = asObject(payload['usage']);
      return {
        type: 'done',
        requestId: asString(payload['request_id']) || headerRequestId,
        finishReason: asString(payload['finish_reason']),
        model: asString(payload['model']),
        usage: {
          promptTokens: asCount(usage['prompt_tokens']),
          completionTokens: asCount(usage['completion_tokens']),
          totalTokens: asCount(usage['total_tokens']),
        },
      };
    }
    default:
      return (
        errorFromBody(payload, headerRequestId) ??
        clientError('bad_response', 'An "error" event without a code.', headerRequestId)
      );
  }
}

/** An `AskError` from a gateway error object (`{code, message, request_id}`), or `null` if it is not one. */
export function errorFromBody(body: Json, fallbackRequestId: string): AskError | null {
  const code = body['code'];
  if (typeof code !== 'string' || code === '') {
    return null;
  }
  const requestId = asString(body['request_id']) || fallbackRequestId;
  const message = asString(body['message']) || code;
  return requestId ? { type: 'error', code, message, requestId } : { type: 'error', code, message };
}

export function parseObject(text: string): Json | null {
  try {
    const value: unknown = JSON.parse(text);
    return isObject(value) ? value : null;
  } catch {
    return null;
  }
}

export function asObject(value: unknown): Json {
  return isObject(value) ? value : {};
}

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function asString(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function asCount(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

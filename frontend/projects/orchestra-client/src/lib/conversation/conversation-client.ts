import { Injectable, inject } from '@angular/core';

import { AskError } from '../ask/ask-events';
import { asObject, clientError, parseObject } from '../ask/ask-wire';
import { ORCHESTRA_CONFIG } from '../config';
import { gatewayFetch, isAskError } from '../gateway/gateway-fetch';

/** One message of a conversation thread, oldest first. */
export interface ThreadMessage {
  readonly role: 'user' | 'assistant';
  readonly text: string;
}

/**
 * Reads a conversation's thread: `GET /conversations/{id}` → `{"conversation_id", "messages": [{"role",
 * "content"}]}`. Only user and assistant messages are kept (not the system prompt). An unknown id (404) is
 * an empty thread: the gateway starts it on the next `/ask` with that id.
 */
@Injectable({ providedIn: 'root' })
export class ConversationClient {
  private readonly config = inject(ORCHESTRA_CONFIG);

  async thread(
    conversationId: string,
    signal: AbortSignal,
  ): Promise<readonly ThreadMessage[] | AskError | null> {
    const path = `/conversations/${encodeURIComponent(conversationId)}`;
    const result = await gatewayFetch(this.config, path, { method: 'GET' }, signal);
    if (result === null) {
      return null;
    }
    if (isAskError(result)) {
      return result.status === 404 ? [] : result;
    }
    let text = '';
    try {
      text = await result.text();
    } catch {
      return signal.aborted
        ? null
        : clientError('network_error', 'The connection to the gateway was lost.');
    }
    const messages = parseObject(text)?.['messages'];
    if (!Array.isArray(messages)) {
      return clientError('bad_response', 'The conversation is not in the expected shape.');
    }
    return messages.flatMap((item: unknown) => {
      const message = asObject(item);
      const role = message['role'];
      const content = message['content'];
      return (role === 'user' || role === 'assistant') && typeof content === 'string'
        ? [{ role, text: content } as const]
        : [];
    });
  }
}

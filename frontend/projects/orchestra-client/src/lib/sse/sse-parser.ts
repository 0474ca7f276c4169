/**
 * An incremental parser for `text/event-stream` bodies (the WHATWG "event stream interpretation"),
 * fed with raw byte chunks exactly as they come off the network. No Angular, no I/O.
 *
 * What it copes with, because networks and proxies cut streams anywhere:
 * - an event, a line, a `\r\n` pair or a multi-byte UTF-8 character split across chunks
 *   (bytes are decoded with a streaming `TextDecoder`, and a trailing `\r` waits for the next chunk);
 * - `\n`, `\r\n` and `\r` line endings, a leading BOM;
 * - several `data:` lines in one event (joined with `\n`), a single optional space after the colon;
 * - comment lines (`: ping`), which are skipped;
 * - a final event that has no trailing blank line: `end()` dispatches it.
 *
 * Events with no `data` field are not dispatched, as in the spec; `id` and `retry` are kept on the
 * message but carry no behaviour here.
 */
export interface SseMessage {
  /** The `event:` field, or `"message"` when the event had none. */
  readonly event: string;
  /** The `data:` lines joined with `\n`. */
  readonly data: string;
  /** The last `id:` seen on the stream so far, or `""`. */
  readonly id: string;
}

export class SseParser {
  readonly #decoder = new TextDecoder('utf-8');
  #buffer = '';
  #eventType = '';
  #dataLines: string[] = [];
  #lastEventId = '';

  /** Parses one chunk and returns the events it completed (possibly none). */
  feed(chunk: Uint8Array): SseMessage[] {
    this.#buffer += this.#decoder.decode(chunk, { stream: true });
    return this.#drainLines(false);
  }

  /** Flushes the decoder and the unterminated tail; returns the events that completes. */
  end(): SseMessage[] {
    this.#buffer += this.#decoder.decode();
    const messages = this.#drainLines(true);
    const last = this.#dispatch();
    return last ? [...messages, last] : messages;
  }

  #drainLines(final: boolean): SseMessage[] {
    const messages: SseMessage[] = [];
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const char = this.#buffer[i];
      if (char !== '\n' && char !== '\r') {
        continue;
      }
      if (char === '\r' && i === this.#buffer.length - 1 && !final) {
        break; // A '\n' may follow in the next chunk: decide then.
      }
      const message = this.#processLine(this.#buffer.slice(start, i));
      if (message) {
        messages.push(message);
      }
      if (char === '\r' && this.#buffer[i + 1] === '\n') {
        i++;
      }
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
    if (final && this.#buffer.length > 0) {
      const message = this.#processLine(this.#buffer);
      this.#buffer = '';
      if (message) {
        messages.push(message);
      }
    }
    return messages;
  }

  #processLine(line: string): SseMessage | null {
    if (line === '') {
      return this.#dispatch();
    }
    if (line.startsWith(':')) {
      return null;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) {
      value = value.slice(1);
    }
    switch (field) {
      case 'event':
        this.#eventType = value;
        break;
      case 'data':
        this.#dataLines.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.#lastEventId = value;
        }
        break;
      default:
        break; // `retry` and unknown fields: ignored.
    }
    return null;
  }

  #dispatch(): SseMessage | null {
    const dataLines = this.#dataLines;
    const event = this.#eventType || 'message';
    this.#dataLines = [];
    this.#eventType = '';
    if (dataLines.length === 0) {
      return null;
    }
    return { event, data: dataLines.join('\n'), id: this.#lastEventId };
  }
}

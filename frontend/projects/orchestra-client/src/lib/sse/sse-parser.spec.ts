import { SseMessage, SseParser } from './sse-parser';

const encoder = new TextEncoder();

/** Feeds `chunks` one by one, then ends the stream; returns every event, in order. */
function parse(chunks: readonly (string | Uint8Array)[]): SseMessage[] {
  const parser = new SseParser();
  const messages = chunks.flatMap((chunk) =>
    parser.feed(typeof chunk === 'string' ? encoder.encode(chunk) : chunk),
  );
  return [...messages, ...parser.end()];
}

/** Every way to cut `bytes` into two chunks. */
function twoWaySplits(bytes: Uint8Array): Uint8Array[][] {
  return Array.from({ length: bytes.length + 1 }, (_, i) => [bytes.slice(0, i), bytes.slice(i)]);
}

describe('SseParser', () => {
  it('parses named events with their data', () => {
    expect(parse(['event: delta\ndata: {"text":"Hi"}\n\nevent: done\ndata: {}\n\n'])).toEqual([
      { event: 'delta', data: '{"text":"Hi"}', id: '' },
      { event: 'done', data: '{}', id: '' },
    ]);
  });

  it('returns each event from feed() as soon as its blank line arrives', () => {
    const parser = new SseParser();
    expect(parser.feed(encoder.encode('event: delta\ndata: a\n'))).toEqual([]);
    expect(parser.feed(encoder.encode('\n'))).toEqual([{ event: 'delta', data: 'a', id: '' }]);
    expect(parser.feed(encoder.encode('data: b\n\ndata: c'))).toEqual([
      { event: 'message', data: 'b', id: '' },
    ]);
  });

  it('gives the same events however the stream is cut into two chunks', () => {
    const stream = encoder.encode(
      'event: delta\r\ndata: {"text":"é😀"}\r\n\r\n: ping\r\n\r\nevent: done\r\ndata: {}\r\n\r\n',
    );
    const expected = [
      { event: 'delta', data: '{"text":"é😀"}', id: '' },
      { event: 'done', data: '{}', id: '' },
    ];
    for (const chunks of twoWaySplits(stream)) {
      expect(parse(chunks)).toEqual(expected);
    }
  });

  it('gives the same events when the stream arrives one byte at a time', () => {
    const stream = encoder.encode(
      'event: delta\ndata: {"text":"naïve – 日本"}\n\nevent: done\ndata: {}\n\n',
    );
    const bytes = Array.from(stream, (byte) => Uint8Array.of(byte));
    expect(parse(bytes)).toEqual([
      { event: 'delta', data: '{"text":"naïve – 日本"}', id: '' },
      { event: 'done', data: '{}', id: '' },
    ]);
  });

  it('decodes a multi-byte character split across chunks', () => {
    const bytes = encoder.encode('data: 😀\n\n');
    // The emoji is bytes 6..9; cut inside it.
    expect(parse([bytes.slice(0, 8), bytes.slice(8)])).toEqual([
      { event: 'message', data: '😀', id: '' },
    ]);
  });

  it('joins multi-line data with a newline', () => {
    expect(
      parse(['event: delta\ndata: line one\ndata:line two\ndata\ndata:  indented\n\n']),
    ).toEqual([{ event: 'delta', data: 'line one\nline two\n\n indented', id: '' }]);
  });

  it('skips comments and keep-alive pings', () => {
    expect(
      parse([': ping\n\n', ':another\n', 'data: x\n', ': inside\n', '\n', ': ping\n\n']),
    ).toEqual([{ event: 'message', data: 'x', id: '' }]);
  });

  it('accepts LF, CRLF and lone CR line endings', () => {
    expect(parse(['data: a\n\n', 'data: b\r\n\r\n', 'data: c\r\rdata: d\r\n\n'])).toEqual([
      { event: 'message', data: 'a', id: '' },
      { event: 'message', data: 'b', id: '' },
      { event: 'message', data: 'c', id: '' },
      { event: 'message', data: 'd', id: '' },
    ]);
  });

  it('does not see a blank line when a CRLF pair is split across chunks', () => {
    expect(parse(['data: a\r', '\ndata: b\r', '\n\r', '\n'])).toEqual([
      { event: 'message', data: 'a\nb', id: '' },
    ]);
  });

  it('dispatches a final event that has no trailing blank line', () => {
    expect(parse(['event: delta\ndata: one\n\nevent: done\ndata: {"ok":true}'])).toEqual([
      { event: 'delta', data: 'one', id: '' },
      { event: 'done', data: '{"ok":true}', id: '' },
    ]);
    expect(parse(['event: done\ndata: last\n'])).toEqual([{ event: 'done', data: 'last', id: '' }]);
  });

  it('does not dispatch events without data, nor leak their type into the next event', () => {
    expect(parse(['event: delta\n\ndata: plain\n\n', 'event: nothing'])).toEqual([
      { event: 'message', data: 'plain', id: '' },
    ]);
  });

  it('keeps an empty data field as an empty string', () => {
    expect(parse(['event: delta\ndata:\n\n'])).toEqual([{ event: 'delta', data: '', id: '' }]);
  });

  it('strips a leading byte order mark and treats a field without colon as empty', () => {
    expect(parse([Uint8Array.of(0xef, 0xbb, 0xbf), 'data\n\n'])).toEqual([
      { event: 'message', data: '', id: '' },
    ]);
  });

  it('remembers the last event id and ignores unknown fields and retry', () => {
    expect(parse(['id: 7\nretry: 10\nfoo: bar\ndata: a\n\ndata: b\n\n'])).toEqual([
      { event: 'message', data: 'a', id: '7' },
      { event: 'message', data: 'b', id: '7' },
    ]);
  });

  it('returns nothing for an empty stream', () => {
    expect(parse([])).toEqual([]);
    expect(parse(['', '\n', '\r\n'])).toEqual([]);
  });
});

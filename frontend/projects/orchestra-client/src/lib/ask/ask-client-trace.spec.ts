import { TestBed } from '@angular/core/testing';
import type { Mock } from 'vitest';

import { OrchestraConfig, provideOrchestra } from '../config';
import { AskClient } from './ask-client';

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function sse(): Response {
  return new Response('event: delta\ndata: {"text":"Hi"}\n\n', {
    status: 200,
    headers: { 'Content-Type': 'text/event-stream' },
  });
}

describe('AskClient trace context', () => {
  let fetchMock: Mock<typeof fetch>;

  function headersSent(
    traceparent: OrchestraConfig['traceparent'],
  ): Promise<Record<string, string>> {
    TestBed.configureTestingModule({
      providers: [provideOrchestra({ baseUrl: 'https://gw.example', token: 'orc_t', traceparent })],
    });
    TestBed.inject(AskClient).ask({ prompt: 'hello' }).subscribe();
    return vi.waitFor(() => {
      expect(fetchMock).toHaveBeenCalledTimes(1);
      return fetchMock.mock.calls[0][1]?.headers as Record<string, string>;
    });
  }

  beforeEach(() => {
    fetchMock = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => sse());
  });

  afterEach(() => {
    fetchMock.mockRestore();
  });

  it("sends the hook's traceparent with the question", async () => {
    const headers = await headersSent(() => TRACEPARENT);
    expect(headers['traceparent']).toBe(TRACEPARENT);
    expect(headers['Authorization']).toBe('Bearer orc_t');
  });

  it('asks the hook again for every request', async () => {
    let calls = 0;
    TestBed.configureTestingModule({
      providers: [
        provideOrchestra({
          baseUrl: 'https://gw.example',
          token: 'orc_t',
          traceparent: () => `00-${String(++calls).padStart(32, '0')}-00f067aa0ba902b7-01`,
        }),
      ],
    });
    const client = TestBed.inject(AskClient);
    client.ask({ prompt: 'a' }).subscribe();
    client.ask({ prompt: 'b' }).subscribe();
    await vi.waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(2));
    const sent = fetchMock.mock.calls.map(
      ([, init]) => (init?.headers as Record<string, string>)['traceparent'],
    );
    expect(sent.sort()).toEqual([
      `00-${'1'.padStart(32, '0')}-00f067aa0ba902b7-01`,
      `00-${'2'.padStart(32, '0')}-00f067aa0ba902b7-01`,
    ]);
  });

  it('sends no traceparent without a hook', async () => {
    const headers = await headersSent(undefined);
    expect(Object.keys(headers).map((name) => name.toLowerCase())).not.toContain('traceparent');
  });

  it('sends none when the hook gives nothing', async () => {
    const headers = await headersSent(() => null);
    expect('traceparent' in headers).toBe(false);
  });

  it('still asks when the hook throws', async () => {
    const headers = await headersSent(() => {
      throw new Error('no active span');
    });
    expect('traceparent' in headers).toBe(false);
    expect(headers['Authorization']).toBe('Bearer orc_t');
  });
});

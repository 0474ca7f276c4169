import { ComponentFixture, TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';
import type { Mock } from 'vitest';
import { userEvent } from 'vitest/browser';

import { AskClient } from '../ask/ask-client';
import { AskDone, AskEvent, AskRequest } from '../ask/ask-events';
import { provideOrchestra } from '../config';
import { Prompt } from './prompt';

/** Markdown answers, feedback and restored threads in `<orc-prompt>` (the basics: prompt.spec.ts). */
describe('Prompt: rendering, feedback, threads', () => {
  let fixture: ComponentFixture<Prompt>;
  let streams: Subject<AskEvent>[];
  let requests: AskRequest[];
  let fetchMock: Mock<typeof fetch>;
  let ids: (string | null)[];

  const root = (): HTMLElement => fixture.nativeElement as HTMLElement;
  const byTestId = (id: string): HTMLElement | null =>
    root().querySelector<HTMLElement>(`[data-testid="${id}"]`);
  const status = (): string | null => byTestId('status')!.getAttribute('data-status');
  const done = (requestId = 'req-9'): AskDone => ({
    type: 'done',
    requestId,
    finishReason: 'stop',
    model: 'm',
    usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
  });

  async function settle(): Promise<void> {
    await fixture.whenStable();
    await new Promise((resolve) => requestAnimationFrame(resolve));
    await fixture.whenStable();
  }

  async function emit(...events: AskEvent[]): Promise<void> {
    events.forEach((event) => streams[streams.length - 1].next(event));
    await settle();
  }

  async function send(text: string): Promise<void> {
    await userEvent.fill(byTestId('prompt-input')!, text);
    await userEvent.click(byTestId('send-button')!);
    await settle();
  }

  function create(inputs: Record<string, unknown> = {}): Promise<void> {
    fixture = TestBed.createComponent(Prompt);
    for (const [name, value] of Object.entries(inputs)) {
      fixture.componentRef.setInput(name, value);
    }
    // What the `conversationIdChange` output emits (not the app's own settings of the input).
    fixture.componentInstance.conversationId.subscribe((id) => ids.push(id));
    document.body.appendChild(root());
    return settle();
  }

  beforeEach(() => {
    streams = [];
    requests = [];
    ids = [];
    fetchMock = vi
      .spyOn(globalThis, 'fetch')
      .mockImplementation(async () => new Response(null, { status: 204 }));
    const client: Pick<AskClient, 'ask'> = {
      ask: (request) => {
        requests.push(request);
        streams.push(new Subject<AskEvent>());
        return streams[streams.length - 1];
      },
    };
    TestBed.configureTestingModule({
      providers: [
        { provide: AskClient, useValue: client },
        provideOrchestra({ baseUrl: 'https://gw.test', token: 'orc_t' }),
      ],
    });
  });

  afterEach(() => {
    document.body.replaceChildren();
    vi.restoreAllMocks();
  });

  describe('Markdown', () => {
    it('renders a table and a code block while the answer is still streaming', async () => {
      await create();
      await send('table please');
      await emit({ type: 'delta', text: '## Sizes\n\n| a | b |\n| - | - |\n| 1 |' });
      expect(status()).toBe('streaming');
      const answer = byTestId('answer')!;
      expect(answer.querySelector('h2')?.textContent).toBe('Sizes');
      expect(answer.querySelector('table td')?.textContent).toBe('1');

      await emit({ type: 'delta', text: ' 2 |\n\n```js\nlet x = 1;' });
      expect(status()).toBe('streaming');
      expect(answer.querySelectorAll('table td')).toHaveLength(2);
      expect(answer.querySelector('pre code.language-js')?.textContent).toBe('let x = 1;');
      expect(answer.querySelector('[data-testid="copy-code"]')).not.toBeNull();
      expect(answer.getAttribute('aria-live')).toBe('polite');
    });

    it('keeps plain text with format="text"', async () => {
      await create({ format: 'text' });
      await send('hi');
      await emit({ type: 'delta', text: '**bold** and\n| a |' });
      const answer = byTestId('answer')!;
      expect(answer.textContent).toBe('**bold** and\n| a |');
      expect(answer.children).toHaveLength(0);
    });
  });

  describe('feedback', () => {
    it('shows 👍/👎 only under a finished answer, rating its request id', async () => {
      await create();
      await send('hi');
      await emit({ type: 'delta', text: 'Hello' });
      expect(byTestId('feedback-up')).toBeNull();

      await emit(done('req-42'));
      await userEvent.click(byTestId('feedback-up')!);
      await vi.waitFor(() =>
        expect(byTestId('feedback-up')!.getAttribute('aria-pressed')).toBe('true'),
      );
      const [url, init] = fetchMock.mock.calls[0];
      expect(url).toBe('https://gw.test/feedback');
      expect(JSON.parse(String(init?.body))).toEqual({ request_id: 'req-42', score: 1 });

      await send('next');
      expect(byTestId('feedback-up')).toBeNull();
    });

    it('keeps the rating of an answer that moved into the thread', async () => {
      await create({ conversation: true });
      await send('one');
      await emit({ type: 'delta', text: 'first' }, done('req-1'));
      await userEvent.click(byTestId('feedback-down')!);
      await vi.waitFor(() =>
        expect(byTestId('feedback-status')?.getAttribute('data-state')).toBe('saved'),
      );

      await send('two');
      const item = root().querySelector('[data-testid="thread-item"][data-role="assistant"]')!;
      expect(
        item.querySelector('[data-testid="feedback-down"]')?.getAttribute('aria-pressed'),
      ).toBe('true');
      expect(byTestId('answer')!.textContent).toBe('');
    });
  });

  describe('threads', () => {
    const thread = (): { role: string | null; text: string | null }[] =>
      Array.from(root().querySelectorAll('[data-testid="thread-item"]'), (item) => ({
        role: item.getAttribute('data-role'),
        text: item.querySelector('[data-testid="thread-text"]')?.textContent ?? null,
      }));

    it('loads the thread of a given conversation id on start, and continues it', async () => {
      fetchMock.mockResolvedValue(
        Response.json({
          conversation_id: 'c-1',
          messages: [
            { role: 'system', content: 'be brief' },
            { role: 'user', content: 'hello' },
            { role: 'assistant', content: 'Hi **there**' },
          ],
        }),
      );
      await create({ conversation: true, conversationId: 'c-1' });
      await vi.waitFor(() => expect(thread()).toHaveLength(2));
      await settle();

      const [url, init] = fetchMock.mock.calls[0];
      expect(url).toBe('https://gw.test/conversations/c-1');
      expect(init?.method).toBe('GET');
      expect(thread()).toEqual([
        { role: 'user', text: 'hello' },
        { role: 'assistant', text: 'Hi there' },
      ]);
      expect(root().querySelector('[data-role="assistant"] strong')?.textContent).toBe('there');
      expect(
        root().querySelector('[data-role="assistant"] [data-testid="feedback-up"]'),
      ).toBeNull();

      await send('again');
      expect(requests).toEqual([{ prompt: 'again', conversationId: 'c-1' }]);
      expect(ids, 'conversationIdChange: the id did not change').toEqual([]);
    });

    it('tells the app the id of a new conversation, and null after "New conversation"', async () => {
      await create({ conversation: true });
      await send('one');
      const id = requests[0].conversationId!;
      expect(id).toBeTruthy();
      expect(fetchMock).not.toHaveBeenCalled();
      await emit({ type: 'delta', text: 'x' }, done());

      await userEvent.click(byTestId('new-conversation')!);
      await settle();
      expect(ids, 'conversationIdChange').toEqual([id, null]);
      expect(fetchMock).not.toHaveBeenCalled();
    });

    it('shows an unknown conversation (404) as an empty thread', async () => {
      fetchMock.mockResolvedValue(
        Response.json(
          { error: { code: 'not_found', message: 'No such conversation.' } },
          { status: 404 },
        ),
      );
      await create({ conversation: true, conversationId: 'gone' });
      await vi.waitFor(() => expect(fetchMock).toHaveBeenCalled());
      await settle();
      expect(byTestId('thread')).toBeNull();
      expect(byTestId('thread-status')).toBeNull();
    });

    it('says when the thread could not be loaded', async () => {
      fetchMock.mockResolvedValue(
        Response.json({ error: { code: 'upstream_unavailable', message: 'x' } }, { status: 503 }),
      );
      await create({ conversation: true, conversationId: 'c-2' });
      await vi.waitFor(() =>
        expect(byTestId('thread-status')?.getAttribute('data-state')).toBe('error'),
      );
      expect(byTestId('thread-status')!.getAttribute('role')).toBe('alert');
    });

    it('loads another thread when the app switches the id', async () => {
      fetchMock.mockImplementation(async (url) =>
        Response.json({
          conversation_id: 'x',
          messages: [{ role: 'user', content: String(url).split('/').pop() }],
        }),
      );
      await create({ conversation: true, conversationId: 'a' });
      await vi.waitFor(() => expect(thread()).toEqual([{ role: 'user', text: 'a' }]));
      fixture.componentRef.setInput('conversationId', 'b');
      await vi.waitFor(() => expect(thread()).toEqual([{ role: 'user', text: 'b' }]));
    });
  });
});

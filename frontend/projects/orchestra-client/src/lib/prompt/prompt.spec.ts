import { ComponentFixture, TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';
import { userEvent } from 'vitest/browser';

import { AskClient } from '../ask/ask-client';
import { AskEvent, AskRequest } from '../ask/ask-events';
import { Prompt } from './prompt';

describe('Prompt', () => {
  let fixture: ComponentFixture<Prompt>;
  let streams: Subject<AskEvent>[];
  let requests: AskRequest[];

  const current = (): Subject<AskEvent> => streams[streams.length - 1];
  const byTestId = <T extends HTMLElement = HTMLElement>(id: string): T | null =>
    (fixture.nativeElement as HTMLElement).querySelector<T>(`[data-testid="${id}"]`);
  const get = <T extends HTMLElement = HTMLElement>(id: string): T => {
    const element = byTestId<T>(id);
    expect(element, `[data-testid="${id}"]`).not.toBeNull();
    return element!;
  };
  const status = (): string | null => get('status').getAttribute('data-status');

  /** Lets change detection run, then the Markdown view's next animation frame. */
  async function settle(): Promise<void> {
    await fixture.whenStable();
    await new Promise((resolve) => requestAnimationFrame(resolve));
    await fixture.whenStable();
  }

  /** Emits stream events and lets the zoneless change detection (and the next frame) render them. */
  async function emit(...events: AskEvent[]): Promise<void> {
    events.forEach((event) => current().next(event));
    await settle();
  }

  async function typeAndSend(text: string): Promise<void> {
    await userEvent.click(get('prompt-input'));
    await userEvent.keyboard(text);
    await userEvent.keyboard('{Enter}');
    await fixture.whenStable();
  }

  beforeEach(async () => {
    streams = [];
    requests = [];
    const client: Pick<AskClient, 'ask'> = {
      ask: (request) => {
        requests.push(request);
        streams.push(new Subject<AskEvent>());
        return current();
      },
    };
    TestBed.configureTestingModule({
      imports: [Prompt],
      // Only AskClient, as an app's own tests would mock it: no ORCHESTRA_CONFIG needed to render.
      providers: [{ provide: AskClient, useValue: client }],
    });
    fixture = TestBed.createComponent(Prompt);
    await fixture.whenStable();
  });

  it('starts idle with labelled controls and a polite live answer region', () => {
    expect(status()).toBe('idle');
    const input = get<HTMLTextAreaElement>('prompt-input');
    expect(input.closest('label')?.textContent).toContain('Prompt');
    expect(get<HTMLButtonElement>('send-button').disabled).toBe(true);
    expect(get('answer').getAttribute('aria-live')).toBe('polite');
    expect(get('answer').getAttribute('role')).toBe('region');
    expect(get('answer').getAttribute('aria-label')).toBe('Answer');
    for (const id of ['cancel-button', 'error', 'retry-button', 'usage']) {
      expect(byTestId(id), id).toBeNull();
    }
  });

  it('sends on Enter and shows the loading state before the first delta', async () => {
    await typeAndSend('What is SSE?');

    expect(requests).toEqual([{ prompt: 'What is SSE?' }]);
    expect(status()).toBe('loading');
    expect(get('status').querySelector('.spinner')).not.toBeNull();
    expect(get<HTMLButtonElement>('send-button').disabled).toBe(true);
    expect(byTestId('cancel-button')).not.toBeNull();
    expect(get('answer').textContent).toBe('');
  });

  it('adds a new line on Shift+Enter without sending', async () => {
    await userEvent.click(get('prompt-input'));
    await userEvent.keyboard('line one{Shift>}{Enter}{/Shift}line two');
    await fixture.whenStable();

    expect(get<HTMLTextAreaElement>('prompt-input').value).toBe('line one\nline two');
    expect(requests).toEqual([]);
    expect(status()).toBe('idle');

    await userEvent.click(get('send-button'));
    await fixture.whenStable();
    expect(requests).toEqual([{ prompt: 'line one\nline two' }]);
  });

  it('grows the answer in place while streaming, then shows done and the usage', async () => {
    await typeAndSend('hi');

    await emit({ type: 'delta', text: 'Hello' });
    expect(status()).toBe('streaming');
    expect(get('answer').textContent).toBe('Hello');
    expect(get('answer').getAttribute('aria-busy')).toBe('true');

    await emit({ type: 'delta', text: ', world' });
    expect(get('answer').textContent).toBe('Hello, world');

    await emit({
      type: 'done',
      requestId: 'r1',
      finishReason: 'stop',
      model: 'm',
      usage: { promptTokens: 4, completionTokens: 7, totalTokens: 11 },
    });
    expect(status()).toBe('done');
    expect(get('usage').textContent).toMatch(/4 prompt \+ 7 completion =\s+11 total/);
    expect(byTestId('cancel-button')).toBeNull();
    expect(get<HTMLButtonElement>('send-button').disabled).toBe(false);
    expect(get('answer').getAttribute('aria-busy')).toBe('false');
  });

  it('renders an HTML-shaped answer as text', async () => {
    await typeAndSend('[xss]');
    await emit({ type: 'delta', text: '<img src=x onerror=alert(1)>' });

    const answer = get('answer');
    expect(answer.textContent).toBe('<img src=x onerror=alert(1)>');
    expect(answer.querySelector('img')).toBeNull();
    expect(answer.querySelectorAll('orc-markdown *')).toHaveLength(1);
    expect(answer.querySelector('orc-markdown > p')?.childElementCount).toBe(0);
  });

  it('shows a readable error with the retry time, and retries the same prompt', async () => {
    await typeAndSend('again');
    await emit({
      type: 'error',
      code: 'quota_exceeded',
      message: 'Quota',
      status: 429,
      retryAfterSeconds: 30,
    });

    expect(status()).toBe('error');
    const error = get('error');
    expect(error.getAttribute('role')).toBe('alert');
    expect(error.getAttribute('data-code')).toBe('quota_exceeded');
    expect(error.getAttribute('data-retry-after')).toBe('30');
    expect(error.textContent).toContain('Quota exceeded. Try again in 30 seconds.');

    await userEvent.click(get('retry-button'));
    await fixture.whenStable();
    expect(requests).toEqual([{ prompt: 'again' }, { prompt: 'again' }]);
    expect(status()).toBe('loading');
    expect(byTestId('error')).toBeNull();
  });

  it('shows the auth error for a rejected token', async () => {
    await typeAndSend('hi');
    await emit({
      type: 'error',
      code: 'invalid_token',
      message: 'Token revoked',
      status: 401,
      requestId: 'r7',
    });

    expect(get('error').textContent).toContain('Not authorized');
    expect(get('error').textContent).toContain('invalid_token');
    expect(get('error').textContent).toContain('r7');
    expect(get('error').hasAttribute('data-retry-after')).toBe(false);
  });

  it('cancels mid-stream with the cancel button, keeping the partial answer', async () => {
    await typeAndSend('long');
    await emit({ type: 'delta', text: 'partial' });

    await userEvent.click(get('cancel-button'));
    await fixture.whenStable();
    expect(status()).toBe('cancelled');
    expect(current().observed).toBe(false);
    expect(get('answer').textContent).toBe('partial');
    expect(byTestId('cancel-button')).toBeNull();
  });

  it('cancels with Escape from the prompt box', async () => {
    await typeAndSend('long');
    await userEvent.keyboard('{Escape}');
    await fixture.whenStable();
    expect(status()).toBe('cancelled');
    expect(current().observed).toBe(false);
  });

  it('passes the model input with the prompt and ignores blank prompts', async () => {
    fixture.componentRef.setInput('model', 'gpt-4o-mini');
    await typeAndSend('   ');
    expect(requests).toEqual([]);

    await userEvent.keyboard('hi{Enter}');
    await fixture.whenStable();
    expect(requests).toEqual([{ prompt: 'hi', model: 'gpt-4o-mini' }]);
  });

  describe('conversation mode', () => {
    const done: AskEvent = {
      type: 'done',
      requestId: 'r',
      finishReason: 'stop',
      model: 'm',
      usage: { promptTokens: 1, completionTokens: 1, totalTokens: 2 },
    };
    const threadItems = (): { role: string | null; text: string | null }[] =>
      Array.from(
        (fixture.nativeElement as HTMLElement).querySelectorAll('[data-testid="thread-item"]'),
        (item) => ({
          role: item.getAttribute('data-role'),
          text: item.querySelector('[data-testid="thread-text"]')?.textContent ?? null,
        }),
      );

    /** Replaces the draft with `text`, sends it and lets `answer` stream in and finish. */
    async function exchange(text: string, answer: string): Promise<void> {
      await userEvent.clear(get('prompt-input'));
      await typeAndSend(text);
      await emit({ type: 'delta', text: answer }, done);
    }

    beforeEach(async () => {
      fixture.componentRef.setInput('conversation', true);
      await fixture.whenStable();
    });

    it('is off by default: no conversation id, button or thread', async () => {
      fixture.componentRef.setInput('conversation', false);
      await fixture.whenStable();
      await exchange('one', 'first');
      await exchange('two', 'second');

      expect(requests).toEqual([{ prompt: 'one' }, { prompt: 'two' }]);
      expect(byTestId('new-conversation')).toBeNull();
      expect(byTestId('thread')).toBeNull();
      expect(get('answer').textContent).toBe('second');
    });

    it('creates a conversation id on the first send and keeps it for the next ones', async () => {
      expect(get<HTMLButtonElement>('new-conversation').disabled).toBe(true);
      fixture.componentRef.setInput('model', 'gpt-4o-mini');
      await exchange('one', 'first');
      await exchange('two', 'second');

      const id = requests[0].conversationId;
      expect(id).toMatch(/^[0-9a-f-]{32,36}$/);
      expect(requests).toEqual([
        { prompt: 'one', model: 'gpt-4o-mini', conversationId: id },
        { prompt: 'two', model: 'gpt-4o-mini', conversationId: id },
      ]);
      expect(get<HTMLButtonElement>('new-conversation').disabled).toBe(false);
    });

    it('shows the previous exchanges above the current answer', async () => {
      await exchange('one', 'first');
      expect(byTestId('thread')).toBeNull();

      await exchange('two', 'second');
      expect(threadItems()).toEqual([
        { role: 'user', text: 'one' },
        { role: 'assistant', text: 'first' },
      ]);
      expect(get('answer').textContent).toBe('second');

      await exchange('three', 'third');
      expect(threadItems()).toEqual([
        { role: 'user', text: 'one' },
        { role: 'assistant', text: 'first' },
        { role: 'user', text: 'two' },
        { role: 'assistant', text: 'second' },
      ]);
      const thread = get('thread');
      const answer = get('answer');
      expect(
        thread.compareDocumentPosition(answer) & Node.DOCUMENT_POSITION_FOLLOWING,
      ).toBeTruthy();
    });

    it('leaves failed exchanges out of the thread', async () => {
      await exchange('one', 'first');
      await userEvent.clear(get('prompt-input'));
      await typeAndSend('two');
      await emit({ type: 'error', code: 'upstream_error', message: 'x' });
      await exchange('three', 'third');

      expect(threadItems()).toEqual([
        { role: 'user', text: 'one' },
        { role: 'assistant', text: 'first' },
      ]);
    });

    it('"New conversation" clears the thread and the id, and the next send starts a new one', async () => {
      await exchange('one', 'first');
      await exchange('two', 'second');
      const firstId = requests[0].conversationId;

      await userEvent.click(get('new-conversation'));
      await settle();
      expect(byTestId('thread')).toBeNull();
      expect(threadItems()).toEqual([]);
      expect(get('answer').textContent).toBe('');
      expect(status()).toBe('idle');
      expect(get<HTMLButtonElement>('new-conversation').disabled).toBe(true);

      await exchange('three', 'third');
      await exchange('four', 'fourth');
      const secondId = requests[2].conversationId;
      expect(secondId).toBeTruthy();
      expect(secondId).not.toBe(firstId);
      expect(requests[3].conversationId).toBe(secondId);
      expect(threadItems()).toEqual([
        { role: 'user', text: 'three' },
        { role: 'assistant', text: 'third' },
      ]);
    });

    it('"New conversation" aborts an answer in progress', async () => {
      await userEvent.clear(get('prompt-input'));
      await typeAndSend('long');
      await emit({ type: 'delta', text: 'partial' });

      await userEvent.click(get('new-conversation'));
      await settle();
      expect(current().observed).toBe(false);
      expect(status()).toBe('idle');
      expect(get('answer').textContent).toBe('');
    });

    it('renders HTML-shaped prompts and answers in the thread as text', async () => {
      const prompt = '<script>alert(1)</script>';
      const answer = '<img src=x onerror=alert(1)>';
      await exchange(prompt, answer);
      await exchange('next', 'ok');

      expect(threadItems()).toEqual([
        { role: 'user', text: prompt },
        { role: 'assistant', text: answer },
      ]);
      const thread = get('thread');
      await settle();
      expect(thread.querySelector('img, script')).toBeNull();
      for (const text of Array.from(thread.querySelectorAll('[data-testid="thread-text"]'))) {
        expect(text.querySelectorAll('*').length).toBeLessThanOrEqual(1);
        expect(text.querySelector(':not(p)')).toBeNull();
      }
    });
  });
});

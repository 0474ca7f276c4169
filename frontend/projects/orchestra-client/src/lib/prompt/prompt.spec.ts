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

  /** Emits stream events and lets the zoneless change detection render them. */
  async function emit(...events: AskEvent[]): Promise<void> {
    events.forEach((event) => current().next(event));
    await fixture.whenStable();
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
    expect(answer.children).toHaveLength(0);
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
});

import { ComponentFixture, TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';

import { AskClient } from '../ask/ask-client';
import { AskProgress } from '../ask/ask-events';
import { Prompt } from './prompt';

const KEY = 'orc-prompt';

describe('Prompt: a running answer survives a reload', () => {
  let fixture: ComponentFixture<Prompt>;
  let streams: Subject<AskProgress>[];
  let followed: string[];

  const current = (): Subject<AskProgress> => streams[streams.length - 1];
  const status = (): string | null =>
    (fixture.nativeElement as HTMLElement)
      .querySelector('[data-testid="status"]')!
      .getAttribute('data-status');
  const kept = (): unknown => JSON.parse(sessionStorage.getItem(KEY) ?? 'null');

  async function create(): Promise<void> {
    fixture = TestBed.createComponent(Prompt);
    fixture.componentRef.setInput('format', 'text');
    await fixture.whenStable();
  }

  async function emit(...events: AskProgress[]): Promise<void> {
    events.forEach((event) => current().next(event));
    await fixture.whenStable();
  }

  beforeEach(() => {
    sessionStorage.clear();
    streams = [];
    followed = [];
    const stream = (): Subject<AskProgress> => {
      streams.push(new Subject<AskProgress>());
      return current();
    };
    const client: Pick<AskClient, 'follow' | 'cancel'> & { ask: () => Subject<AskProgress> } = {
      ask: stream,
      follow: (requestId) => {
        followed.push(requestId);
        return stream();
      },
      cancel: async () => undefined,
    };
    TestBed.configureTestingModule({
      imports: [Prompt],
      providers: [{ provide: AskClient, useValue: client }],
    });
  });

  afterEach(() => sessionStorage.clear());

  it('keeps the running request id and last event id, and clears them at done', async () => {
    await create();
    fixture.componentInstance['draft'].set('q');
    fixture.componentInstance['send']();
    await emit(
      { type: 'connected', requestId: 'r1', resumed: false },
      { type: 'delta', text: 'Hi', eventId: 1 },
    );
    expect(kept()).toEqual({ requestId: 'r1', lastEventId: 1 });

    await emit({ type: 'reconnecting', requestId: 'r1', attempt: 1, delayMs: 500 });
    expect(status()).toBe('reconnecting');
    await emit({ type: 'delta', text: '!', eventId: 2 });
    expect(kept()).toEqual({ requestId: 'r1', lastEventId: 2 });

    await emit({
      type: 'done',
      requestId: 'r1',
      finishReason: 'stop',
      model: 'm',
      usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
    });
    expect(kept()).toBeNull();
  });

  it('follows the kept answer when it starts again, and forgets it at error', async () => {
    sessionStorage.setItem(KEY, JSON.stringify({ requestId: 'r2', lastEventId: 4 }));
    await create();

    expect(followed).toEqual(['r2']);
    expect(status()).toBe('loading');
    await emit(
      { type: 'connected', requestId: 'r2', resumed: false },
      { type: 'delta', text: 'Again', eventId: 1 },
    );
    expect((fixture.nativeElement as HTMLElement).textContent).toContain('Again');
    expect(kept()).toEqual({ requestId: 'r2', lastEventId: 1 });

    await emit({ type: 'error', code: 'stream_expired', message: 'gone', status: 410 });
    expect(kept()).toBeNull();
  });

  it('keeps nothing with resumeKey=""', async () => {
    sessionStorage.setItem(KEY, JSON.stringify({ requestId: 'r3', lastEventId: 1 }));
    fixture = TestBed.createComponent(Prompt);
    fixture.componentRef.setInput('resumeKey', '');
    await fixture.whenStable();

    expect(followed).toEqual([]);
    expect(kept()).toEqual({ requestId: 'r3', lastEventId: 1 });
  });
});

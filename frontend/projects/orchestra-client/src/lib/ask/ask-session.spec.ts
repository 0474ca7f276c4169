import { TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';

import { AskClient } from './ask-client';
import { AskDone, AskError, AskEvent, AskRequest } from './ask-events';
import { AskSession } from './ask-session';

const done: AskDone = {
  type: 'done',
  requestId: 'r1',
  finishReason: 'stop',
  model: 'm',
  usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
};
const quota: AskError = {
  type: 'error',
  code: 'quota_exceeded',
  message: 'Quota',
  status: 429,
  retryAfterSeconds: 9,
};

describe('AskSession', () => {
  let streams: Subject<AskEvent>[];
  let requests: AskRequest[];
  let session: AskSession;

  const current = (): Subject<AskEvent> => streams[streams.length - 1];

  beforeEach(() => {
    streams = [];
    requests = [];
    const client: Pick<AskClient, 'ask'> = {
      ask: (request) => {
        requests.push(request);
        const stream = new Subject<AskEvent>();
        streams.push(stream);
        return stream;
      },
    };
    TestBed.configureTestingModule({
      providers: [AskSession, { provide: AskClient, useValue: client }],
    });
    session = TestBed.inject(AskSession);
  });

  it('starts idle', () => {
    expect(session.status()).toBe('idle');
    expect(session.text()).toBe('');
    expect(session.busy()).toBe(false);
  });

  it('goes loading → streaming → done, growing the text and keeping the usage', () => {
    session.start({ prompt: 'q' });
    expect(session.status()).toBe('loading');
    expect(session.busy()).toBe(true);

    current().next({ type: 'delta', text: '' });
    expect(session.status()).toBe('loading');
    current().next({ type: 'delta', text: 'Hel' });
    expect(session.status()).toBe('streaming');
    expect(session.text()).toBe('Hel');
    current().next({ type: 'delta', text: 'lo' });
    expect(session.text()).toBe('Hello');

    expect(session.requestId()).toBeNull();
    current().next(done);
    expect(session.status()).toBe('done');
    expect(session.usage()).toEqual(done.usage);
    expect(session.requestId()).toBe(done.requestId);
    expect(session.busy()).toBe(false);

    session.start({ prompt: 'again' });
    expect(session.requestId()).toBeNull();
  });

  it('keeps the error and the partial text on error', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'delta', text: 'part' });
    current().next(quota);
    expect(session.status()).toBe('error');
    expect(session.error()).toEqual(quota);
    expect(session.text()).toBe('part');
    expect(session.canRetry()).toBe(true);
  });

  it('cancel unsubscribes (aborting the request) and keeps what arrived', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'delta', text: 'so far' });
    expect(current().observed).toBe(true);

    session.cancel();
    expect(current().observed).toBe(false);
    expect(session.status()).toBe('cancelled');
    expect(session.text()).toBe('so far');
  });

  it('ignores cancel when nothing is in flight', () => {
    session.start({ prompt: 'q' });
    current().next(done);
    session.cancel();
    expect(session.status()).toBe('done');
  });

  it('retry sends the last request again with a clean state', () => {
    session.start({ prompt: 'again' });
    current().next({ type: 'delta', text: 'x' });
    current().next(quota);

    session.retry();
    expect(requests).toEqual([{ prompt: 'again' }, { prompt: 'again' }]);
    expect(session.status()).toBe('loading');
    expect(session.error()).toBeNull();
    expect(session.text()).toBe('');
  });

  it('a new start aborts the answer in progress', () => {
    session.start({ prompt: 'first' });
    const first = current();
    session.start({ prompt: 'second' });
    expect(first.observed).toBe(false);
    first.next({ type: 'delta', text: 'stale' });
    expect(session.text()).toBe('');
  });

  it('reset aborts the answer in progress and forgets it, so there is nothing to retry', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'delta', text: 'partial' });
    session.reset();

    expect(current().observed).toBe(false);
    expect(session.status()).toBe('idle');
    expect(session.text()).toBe('');
    expect(session.error()).toBeNull();
    expect(session.usage()).toBeNull();
    session.retry();
    expect(requests).toHaveLength(1);
  });

  it('cancels the stream when destroyed', () => {
    session.start({ prompt: 'q' });
    TestBed.resetTestingModule();
    expect(current().observed).toBe(false);
  });
});

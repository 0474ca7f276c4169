import { TestBed } from '@angular/core/testing';
import { Subject } from 'rxjs';

import { AskClient } from './ask-client';
import { AskProgress } from './ask-events';
import { AskSession } from './ask-session';

describe('AskSession resume and cancel', () => {
  let streams: Subject<AskProgress>[];
  let followed: string[];
  let cancelled: string[];
  let session: AskSession;

  const current = (): Subject<AskProgress> => streams[streams.length - 1];
  const stream = (): Subject<AskProgress> => {
    const subject = new Subject<AskProgress>();
    streams.push(subject);
    return subject;
  };

  beforeEach(() => {
    streams = [];
    followed = [];
    cancelled = [];
    const client: Pick<AskClient, 'follow' | 'cancel'> & { ask: () => Subject<AskProgress> } = {
      // The session asks with `{ progress: true }`: connection events come with the answer's.
      ask: () => stream(),
      follow: (requestId) => {
        followed.push(requestId);
        return stream();
      },
      cancel: async (requestId) => {
        cancelled.push(requestId);
      },
    };
    TestBed.configureTestingModule({
      providers: [AskSession, { provide: AskClient, useValue: client }],
    });
    session = TestBed.inject(AskSession);
  });

  it('shows reconnecting while the connection is resumed, then streams on', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'connected', requestId: 'r1', resumed: false });
    current().next({ type: 'delta', text: 'Hel', eventId: 1 });
    expect(session.running()).toEqual({ requestId: 'r1', lastEventId: 1 });

    current().next({ type: 'reconnecting', requestId: 'r1', attempt: 1, delayMs: 500 });
    expect(session.status()).toBe('reconnecting');
    expect(session.busy()).toBe(true);
    expect(session.text()).toBe('Hel');

    current().next({ type: 'connected', requestId: 'r1', resumed: true });
    expect(session.status()).toBe('streaming');
    current().next({ type: 'delta', text: 'lo', eventId: 2 });
    expect(session.running()).toEqual({ requestId: 'r1', lastEventId: 2 });
    current().next({
      type: 'done',
      requestId: 'r1',
      finishReason: 'stop',
      model: 'm',
      usage: { promptTokens: 1, completionTokens: 2, totalTokens: 3 },
    });
    expect(session.text()).toBe('Hello');
    expect(session.running()).toBeNull();
    expect(cancelled).toEqual([]);
  });

  it('cancel() aborts and cancels the answer on the gateway', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'connected', requestId: 'r2', resumed: false });
    session.cancel();

    expect(current().observed).toBe(false);
    expect(cancelled).toEqual(['r2']);
    expect(session.status()).toBe('cancelled');
    expect(session.running()).toBeNull();
  });

  it('a new question cancels the answer in progress; a finished or failed one is left alone', () => {
    session.start({ prompt: 'one' });
    current().next({ type: 'connected', requestId: 'r3', resumed: false });
    session.start({ prompt: 'two' });
    expect(cancelled).toEqual(['r3']);

    current().next({ type: 'connected', requestId: 'r4', resumed: false });
    current().next({ type: 'error', code: 'upstream_error', message: 'x' });
    session.start({ prompt: 'three' });
    expect(cancelled).toEqual(['r3']);
  });

  it('follow() picks up a running answer by its id', () => {
    session.follow('r5');
    expect(followed).toEqual(['r5']);
    expect(session.status()).toBe('loading');
    current().next({ type: 'connected', requestId: 'r5', resumed: false });
    current().next({ type: 'delta', text: 'So far', eventId: 7 });
    expect(session.text()).toBe('So far');
    expect(session.running()).toEqual({ requestId: 'r5', lastEventId: 7 });
  });

  it('is not cancelled on the gateway when its component goes away (a reload picks it up)', () => {
    session.start({ prompt: 'q' });
    current().next({ type: 'connected', requestId: 'r6', resumed: false });
    TestBed.resetTestingModule();

    expect(current().observed).toBe(false);
    expect(cancelled).toEqual([]);
  });
});

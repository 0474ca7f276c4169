import { ComponentFixture, TestBed } from '@angular/core/testing';
import type { Mock } from 'vitest';
import { userEvent } from 'vitest/browser';

import { provideOrchestra } from '../config';
import { Feedback } from './feedback';
import { FeedbackScore } from './feedback-client';

describe('Feedback', () => {
  let fixture: ComponentFixture<Feedback>;
  let fetchMock: Mock<typeof fetch>;
  let scores: (FeedbackScore | null)[];

  const get = <T extends HTMLElement = HTMLElement>(id: string): T =>
    (fixture.nativeElement as HTMLElement).querySelector<T>(`[data-testid="${id}"]`)!;
  const pressed = (id: string): string | null => get(id).getAttribute('aria-pressed');
  const sent = (): unknown[] =>
    fetchMock.mock.calls.map(([, init]) => JSON.parse(String(init?.body)) as unknown);
  const settled = async (): Promise<void> => {
    await vi.waitFor(() => expect(get('feedback-status').dataset['state']).not.toBe('sending'));
    await fixture.whenStable();
  };

  beforeEach(async () => {
    fetchMock = vi.spyOn(globalThis, 'fetch').mockImplementation(async () => {
      return new Response(null, { status: 204 });
    });
    TestBed.configureTestingModule({
      providers: [provideOrchestra({ baseUrl: 'https://gw.test/', token: 'orc_t' })],
    });
    fixture = TestBed.createComponent(Feedback);
    fixture.componentRef.setInput('requestId', 'req-1');
    scores = [];
    fixture.componentInstance.score.subscribe((score) => scores.push(score));
    document.body.appendChild(fixture.nativeElement as HTMLElement);
    await fixture.whenStable();
  });

  afterEach(() => vi.restoreAllMocks());

  it('starts unrated, with labelled buttons and no comment box', () => {
    expect(pressed('feedback-up')).toBe('false');
    expect(pressed('feedback-down')).toBe('false');
    expect(get('feedback-up').getAttribute('aria-label')).toBe('Good answer');
    expect(get('feedback-down').getAttribute('aria-label')).toBe('Bad answer');
    expect(get('feedback-comment')).toBeNull();
  });

  it('rates up: POST /feedback with the request id, then shows the choice', async () => {
    await userEvent.click(get('feedback-up'));
    await settled();

    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe('https://gw.test/feedback');
    expect(init?.method).toBe('POST');
    expect((init?.headers as Record<string, string>)['Authorization']).toBe('Bearer orc_t');
    expect(sent()).toEqual([{ request_id: 'req-1', score: 1 }]);
    expect(pressed('feedback-up')).toBe('true');
    expect(pressed('feedback-down')).toBe('false');
    expect(get('feedback-status').dataset['state']).toBe('saved');
    expect(scores).toEqual([1]);
  });

  it('replaces the rating with the other button, and sends a comment with it', async () => {
    await userEvent.click(get('feedback-up'));
    await settled();
    await userEvent.click(get('feedback-down'));
    await settled();
    expect(pressed('feedback-up')).toBe('false');
    expect(pressed('feedback-down')).toBe('true');

    await userEvent.click(get('feedback-comment'));
    await userEvent.keyboard('  Wrong table  ');
    await userEvent.click(get('feedback-send-comment'));
    await settled();

    expect(sent()).toEqual([
      { request_id: 'req-1', score: 1 },
      { request_id: 'req-1', score: -1 },
      { request_id: 'req-1', score: -1, comment: 'Wrong table' },
    ]);
    expect(scores).toEqual([1, -1]);
  });

  it('does not send the same rating twice', async () => {
    await userEvent.click(get('feedback-up'));
    await settled();
    await userEvent.click(get('feedback-up'));
    await fixture.whenStable();
    expect(fetchMock).toHaveBeenCalledTimes(1);
  });

  it('works from the keyboard', async () => {
    get('feedback-up').focus();
    await userEvent.keyboard('{Tab}');
    expect(document.activeElement).toBe(get('feedback-down'));
    await userEvent.keyboard('{Enter}');
    await settled();
    expect(pressed('feedback-down')).toBe('true');
    await userEvent.keyboard('{Shift>}{Tab}{/Shift} ');
    await settled();
    expect(pressed('feedback-up')).toBe('true');
    expect(sent()).toEqual([
      { request_id: 'req-1', score: -1 },
      { request_id: 'req-1', score: 1 },
    ]);
  });

  it('shows a refused rating and keeps the last saved one', async () => {
    await userEvent.click(get('feedback-up'));
    await settled();
    fetchMock.mockResolvedValue(
      new Response(JSON.stringify({ error: { code: 'not_found', message: 'No such request.' } }), {
        status: 404,
        headers: { 'Content-Type': 'application/json' },
      }),
    );
    await userEvent.click(get('feedback-down'));
    await settled();

    expect(get('feedback-status').dataset['state']).toBe('error');
    expect(get('feedback-status').textContent).toContain('Not saved');
    expect(pressed('feedback-up')).toBe('true');
    expect(pressed('feedback-down')).toBe('false');
    expect(scores).toEqual([1]);
  });
});

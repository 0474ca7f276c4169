import { TestBed } from '@angular/core/testing';
import { AskClient } from 'orchestra-client';
import { NEVER } from 'rxjs';

import { App } from './app';
import { DEMO_NOTICE } from './app.config';

describe('App', () => {
  async function render(notice: string | null): Promise<HTMLElement> {
    const client: Pick<AskClient, 'ask'> = { ask: () => NEVER };
    TestBed.configureTestingModule({
      imports: [App],
      providers: [
        { provide: AskClient, useValue: client },
        { provide: DEMO_NOTICE, useValue: notice },
      ],
    });
    const fixture = TestBed.createComponent(App);
    await fixture.whenStable();
    return fixture.nativeElement as HTMLElement;
  }

  it('shows the notice from config.json, e.g. that the model is a stand-in', async () => {
    const page = await render('Demo model: the answers are made-up words.');
    const notice = page.querySelector('[data-testid="demo-notice"]');
    expect(notice?.textContent?.trim()).toBe('Demo model: the answers are made-up words.');
    expect(notice?.getAttribute('role')).toBe('note');
  });

  it('is a chat: <orc-prompt> in conversation mode, with its "New conversation" action', async () => {
    const page = await render(null);
    const prompt = page.querySelector('orc-prompt');
    expect(prompt?.querySelector('[data-testid="new-conversation"]')).not.toBeNull();
    expect(prompt?.querySelector('[data-testid="prompt-input"]')).not.toBeNull();
  });

  it('shows no notice when config.json has none', async () => {
    const page = await render(null);
    expect(page.querySelector('[data-testid="demo-notice"]')).toBeNull();
  });
});

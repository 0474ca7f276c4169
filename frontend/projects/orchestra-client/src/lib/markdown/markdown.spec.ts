import { ComponentFixture, TestBed } from '@angular/core/testing';
import { userEvent } from 'vitest/browser';

import { Markdown } from './markdown';

const frame = (): Promise<number> => new Promise((resolve) => requestAnimationFrame(resolve));

describe('Markdown', () => {
  let fixture: ComponentFixture<Markdown>;
  let host: HTMLElement;

  async function show(source: string): Promise<void> {
    fixture.componentRef.setInput('source', source);
    await fixture.whenStable();
  }

  beforeEach(async () => {
    fixture = TestBed.createComponent(Markdown);
    host = fixture.nativeElement as HTMLElement;
    document.body.appendChild(host);
    await show('');
    await frame();
  });

  afterEach(() => vi.restoreAllMocks());

  it('renders once per animation frame, with the latest source', async () => {
    const updates = vi.spyOn(
      (fixture.componentInstance as unknown as { view: { update(text: string): void } }).view,
      'update',
    );
    // Three changes within one frame (change detection run synchronously each time).
    for (const source of ['# Ti', '# Title\n\nSome', '# Title\n\nSome *text*']) {
      fixture.componentRef.setInput('source', source);
      fixture.detectChanges();
    }
    expect(updates).not.toHaveBeenCalled();

    await frame();
    expect(updates).toHaveBeenCalledTimes(1);
    expect(host.querySelector('h1')?.textContent).toBe('Title');
    expect(host.querySelector('p em')?.textContent).toBe('text');
    expect(host.classList).toContain('orc-markdown');
  });

  it('copies a code block with its button and says so', async () => {
    const writes: string[] = [];
    vi.spyOn(navigator.clipboard, 'writeText').mockImplementation(async (text) => {
      writes.push(text);
    });
    await show('Run:\n\n```sh\nnpm ci\nnpm test\n```\n');
    await frame();

    const button = host.querySelector<HTMLButtonElement>('[data-testid="copy-code"]')!;
    await userEvent.click(button);
    await vi.waitFor(() => expect(button.textContent).toBe('Copied'));
    expect(writes).toEqual(['npm ci\nnpm test']);
    expect(button.dataset['copied']).toBe('true');
  });

  it('says when the clipboard refused', async () => {
    vi.spyOn(navigator.clipboard, 'writeText').mockRejectedValue(new Error('denied'));
    await show('```\nx\n```\n');
    await frame();

    const button = host.querySelector<HTMLButtonElement>('[data-testid="copy-code"]')!;
    await userEvent.click(button);
    await vi.waitFor(() => expect(button.textContent).toBe('Copy failed'));
    expect(button.dataset['copied']).toBe('false');
  });
});

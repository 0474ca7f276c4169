import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  ElementRef,
  ViewEncapsulation,
  effect,
  inject,
  input,
} from '@angular/core';

import { StreamingMarkdown } from './streaming-markdown';

/** How long a copy button says "Copied". */
const COPIED_MS = 2000;

/**
 * `<orc-markdown [source]="text">`: renders Markdown safely (see `markdown-html.ts`), at most once per
 * animation frame however often `source` changes, and incrementally while it grows (a streamed answer).
 * Code blocks carry a copy button (`data-testid="copy-code"`). Styles are global but scoped by the
 * `.orc-markdown` class, because the rendered nodes are not created by an Angular template.
 */
@Component({
  selector: 'orc-markdown',
  template: '',
  styleUrl: './markdown.css',
  encapsulation: ViewEncapsulation.None,
  changeDetection: ChangeDetectionStrategy.OnPush,
  host: { class: 'orc-markdown', '(click)': 'onClick($event)' },
})
export class Markdown {
  readonly source = input.required<string>();

  private readonly view = new StreamingMarkdown(inject(ElementRef<HTMLElement>).nativeElement);
  private frame: number | null = null;

  constructor() {
    effect(() => {
      this.source();
      this.schedule();
    });
    inject(DestroyRef).onDestroy(() => {
      if (this.frame !== null) {
        cancelAnimationFrame(this.frame);
      }
    });
  }

  private schedule(): void {
    // No frames outside a browser (server-side rendering): the browser renders after hydration.
    if (typeof requestAnimationFrame !== 'function') {
      return;
    }
    if (this.frame === null) {
      // Many tokens arrive per frame on a fast stream: render what is there when the browser paints.
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.view.update(this.source());
      });
    }
  }

  protected onClick(event: MouseEvent): void {
    const button = (event.target as Element | null)?.closest<HTMLElement>(
      '[data-testid="copy-code"]',
    );
    const code = button?.parentElement?.querySelector('code');
    if (!button || !code) {
      return;
    }
    void copyText(code.textContent ?? '').then((copied) => {
      button.textContent = copied ? 'Copied' : 'Copy failed';
      button.dataset['copied'] = String(copied);
      setTimeout(() => {
        button.textContent = 'Copy';
        delete button.dataset['copied'];
      }, COPIED_MS);
    });
  }
}

/** Copies `text` to the clipboard; `false` when the browser refuses (e.g. no secure context). */
async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

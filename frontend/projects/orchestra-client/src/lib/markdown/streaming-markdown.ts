import type { Token } from 'marked';

import { lexMarkdown, renderTokens } from './markdown-html';

/**
 * Renders a growing Markdown text into `host` without redoing the whole answer on every update.
 *
 * Each `update(text)` lexes only the text after the blocks already committed. Every block but the last
 * is complete (later text can only extend the last one), so it is rendered once, appended and never
 * touched again; only the last, still open block is rendered anew. A text that does not extend the
 * previous one (a new answer) starts over.
 */
export class StreamingMarkdown {
  /** The source of the committed blocks: a prefix of every text since the last reset. */
  private committed = '';
  private lastText = '';
  private lastTailSource: string | null = null;
  private tailNodes: Node[] = [];

  constructor(private readonly host: HTMLElement) {}

  update(raw: string): void {
    const text = raw.replace(/\r\n?/g, '\n');
    if (text === this.lastText) {
      return;
    }
    if (!text.startsWith(this.committed)) {
      this.reset();
    }
    this.lastText = text;
    const rest = text.slice(this.committed.length);
    const tokens = lexMarkdown(rest);
    const open = lastBlockIndex(tokens);
    const closed = tokens.slice(0, open);
    const closedSource = closed.map((token) => token.raw).join('');
    // Commit only when the tokens account for the text exactly (else keep everything open: still correct).
    if (closed.length > 0 && rest.startsWith(closedSource)) {
      this.host.insertBefore(renderTokens(closed), this.tailNodes[0] ?? null);
      this.committed += closedSource;
      this.renderTail(tokens.slice(open), rest.slice(closedSource.length));
    } else {
      this.renderTail(tokens, rest);
    }
  }

  /** Forgets everything rendered. */
  reset(): void {
    this.host.replaceChildren();
    this.committed = '';
    this.lastText = '';
    this.lastTailSource = null;
    this.tailNodes = [];
  }

  private renderTail(tokens: Token[], source: string): void {
    if (source === this.lastTailSource) {
      return;
    }
    this.lastTailSource = source;
    const fragment = renderTokens(tokens);
    const nodes = Array.from(fragment.childNodes);
    this.tailNodes.forEach((node) => node.parentNode?.removeChild(node));
    this.host.appendChild(fragment);
    this.tailNodes = nodes;
  }
}

/** The index of the last block that is not blank space (0 when there is none). */
function lastBlockIndex(tokens: readonly Token[]): number {
  let index = tokens.length - 1;
  while (index > 0 && tokens[index].type === 'space') {
    index--;
  }
  return Math.max(index, 0);
}

import DOMPurify, { type Config, type DOMPurify as Purifier } from 'dompurify';
import { Marked, type Token } from 'marked';

/**
 * Markdown → safe DOM for model answers: `marked` (GFM) turns the answer into HTML, DOMPurify keeps only
 * the elements Markdown produces. Raw HTML in the answer is shown as text (never parsed as HTML), images
 * are shown as their alt text (an image URL in an answer could leak data to its host), links keep only
 * `http:`, `https:` and `mailto:` targets and open in a new tab without an opener or referrer.
 */

const SAFE_LINK = /^(?:https?:|mailto:)/i;

const PURIFY_CONFIG: Config = {
  ALLOWED_TAGS: [
    'p', 'br', 'hr', 'em', 'strong', 'del', 'code', 'pre', 'blockquote', 'a', 'div', 'button',
    'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'ul', 'ol', 'li',
    'table', 'thead', 'tbody', 'tr', 'th', 'td',
  ], // prettier-ignore
  ALLOWED_ATTR: ['href', 'title', 'class', 'start', 'align', 'type', 'data-testid', 'aria-label'],
  ALLOW_DATA_ATTR: false,
  // Values of attributes not listed here must match ALLOWED_URI_REGEXP, which only `href` should face.
  ADD_URI_SAFE_ATTR: ['start', 'align', 'type', 'data-testid', 'aria-label'],
  ALLOWED_URI_REGEXP: SAFE_LINK,
};

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** The fence's language as a class name part: its first word, letters, digits and `+#.-` only. */
function languageOf(lang: string | undefined): string {
  const word = (lang ?? '').trim().split(/\s+/)[0] ?? '';
  return /^[\w+#.-]{1,32}$/.test(word) ? word : '';
}

const marked = new Marked({
  gfm: true,
  async: false,
  renderer: {
    // Raw HTML is shown as the characters it is made of (an HTML block as a paragraph of them).
    html: (token) =>
      'block' in token && token.block
        ? `<p>${escapeHtml(token.text.trim())}</p>`
        : escapeHtml(token.text),
    image: ({ text }) => escapeHtml(text),
    code({ text, lang }) {
      const language = languageOf(lang);
      const cls = language ? ` class="language-${language}"` : '';
      return (
        '<div class="orc-code">' +
        '<button type="button" class="orc-copy" data-testid="copy-code" aria-label="Copy code">Copy</button>' +
        `<pre><code${cls}>${escapeHtml(text)}</code></pre></div>\n`
      );
    },
  },
});

let purifier: Purifier | null = null;

/** One DOMPurify instance of our own, so our hook never touches an app's global DOMPurify. */
function purify(): Purifier {
  if (purifier === null) {
    purifier = DOMPurify(window);
    // After the attribute allowlist ran: links that kept a (safe) href open in a new tab, no opener/referrer.
    purifier.addHook('afterSanitizeAttributes', (node) => {
      if (node.tagName === 'A' && node.hasAttribute('href')) {
        node.setAttribute('target', '_blank');
        node.setAttribute('rel', 'noopener noreferrer');
      }
    });
  }
  return purifier;
}

/** The block tokens of `source` (GFM). Line ends are normalised first, as the lexer does. */
export function lexMarkdown(source: string): Token[] {
  return marked.lexer(source);
}

/** Safe DOM nodes for block tokens from `lexMarkdown`. */
export function renderTokens(tokens: readonly Token[]): DocumentFragment {
  const html = marked.parser([...tokens]);
  const fragment = purify().sanitize(html, { ...PURIFY_CONFIG, RETURN_DOM_FRAGMENT: true });
  // The line breaks between blocks would only add stray whitespace to the answer's text.
  for (const node of Array.from(fragment.childNodes)) {
    if (node.nodeType === Node.TEXT_NODE && (node.textContent ?? '').trim() === '') {
      node.remove();
    }
  }
  return fragment;
}

/** Safe DOM nodes for a whole Markdown text. */
export function renderMarkdown(source: string): DocumentFragment {
  return renderTokens(lexMarkdown(source));
}

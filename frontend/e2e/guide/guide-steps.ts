/**
 * The steps of GUIDE.md that CI replays: each fenced block right after a `<!-- guide-test: KIND ARG -->`
 * comment. `sh work` runs the block in the folder that holds the app, `sh app` in the app; `file PATH`
 * writes the block to that path in the app. Reading them from the guide keeps guide and test in step.
 */
import { readFile } from 'node:fs/promises';

export type GuideStep =
  | { readonly kind: 'sh'; readonly where: 'work' | 'app'; readonly code: string }
  | { readonly kind: 'file'; readonly path: string; readonly code: string };

const MARKED_BLOCK = /^<!-- guide-test: (sh|file) (\S+) -->\s*\n```[\w-]*\n([\s\S]*?)\n```/gm;

export function guideSteps(markdown: string): GuideStep[] {
  const steps: GuideStep[] = [];
  for (const [, kind, arg, code] of markdown.matchAll(MARKED_BLOCK)) {
    if (kind === 'file') {
      if (arg!.startsWith('/') || arg!.split('/').includes('..')) {
        throw new Error(`guide-test file path must stay inside the app: ${arg}`);
      }
      steps.push({ kind, path: arg!, code: `${code}\n` });
    } else if (arg === 'work' || arg === 'app') {
      steps.push({ kind: 'sh', where: arg, code: code! });
    } else {
      throw new Error(`guide-test sh runs in "work" or "app", not "${arg}"`);
    }
  }
  const markers = markdown.match(/^<!-- guide-test:/gm)?.length ?? 0;
  if (markers !== steps.length) {
    throw new Error(`${markers} guide-test markers but ${steps.length} blocks right after them`);
  }
  return steps;
}

export async function readGuide(path: string): Promise<GuideStep[]> {
  return guideSteps(await readFile(path, 'utf8'));
}

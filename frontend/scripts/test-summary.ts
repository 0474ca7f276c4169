/**
 * Sums the unit (Vitest JSON, the library's on Angular 22 and 21) and e2e (node:test TAP) reports in test-results/ and prints one closing
 * line, `N passed, N failed`. A missing or unreadable report counts as one failure, and so does each failed
 * non-test step that ci.sh reports in ORC_STEP_FAILURES (format, builds, type-check). Exits 1 on any failure.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

interface Counts {
  readonly passed: number;
  readonly failed: number;
}

const RESULTS = resolve(import.meta.dirname, '..', 'test-results');
const REPORTS: readonly { readonly file: string; readonly read: (text: string) => Counts }[] = [
  { file: 'unit-orchestra-client.json', read: fromVitestJson },
  // The same library specs, built with Angular 21 (compat/ng21).
  { file: 'unit-orchestra-client-ng21.json', read: fromVitestJson },
  { file: 'unit-demo.json', read: fromVitestJson },
  { file: 'e2e.tap', read: fromNodeTap },
  // GUIDE.md replayed on a fresh `ng new` app (e2e/guide/).
  { file: 'e2e-guide.tap', read: fromNodeTap },
];

function fromVitestJson(text: string): Counts {
  const report = JSON.parse(text) as {
    numPassedTests?: unknown;
    numFailedTests?: unknown;
    numTotalTests?: unknown;
  };
  const { numPassedTests: passed, numFailedTests: failed, numTotalTests: total } = report;
  if (typeof passed !== 'number' || typeof failed !== 'number' || typeof total !== 'number') {
    throw new Error('not a Vitest JSON report');
  }
  // Tests that neither passed nor failed (pending, todo) count as failed: nothing may silently not run.
  return { passed, failed: total - passed };
}

function fromNodeTap(text: string): Counts {
  const count = (name: string): number => {
    const match = new RegExp(`^# ${name} (\\d+)$`, 'm').exec(text);
    if (!match) {
      throw new Error(`no "# ${name}" line in the TAP report`);
    }
    return Number(match[1]);
  };
  return { passed: count('pass'), failed: count('fail') + count('cancelled') + count('todo') };
}

let passed = 0;
let failed = 0;
for (const { file, read } of REPORTS) {
  try {
    const counts = read(await readFile(join(RESULTS, file), 'utf8'));
    console.log(`${file}: ${counts.passed} passed, ${counts.failed} failed`);
    passed += counts.passed;
    failed += counts.failed;
    if (counts.passed + counts.failed === 0) {
      console.log(`${file}: no tests ran (counted as 1 failure)`);
      failed++;
    }
  } catch (error) {
    console.log(
      `${file}: missing or unreadable, counted as 1 failure (${error instanceof Error ? error.message : String(error)})`,
    );
    failed++;
  }
}
const stepFailures = Number(process.env['ORC_STEP_FAILURES'] ?? '0') || 0;
if (stepFailures > 0) {
  console.log(`non-test steps: ${stepFailures} failed`);
  failed += stepFailures;
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed > 0 ? 1 : 0;

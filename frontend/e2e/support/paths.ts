import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** frontend/ */
export const FRONTEND_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The repository root (frontend/..). */
export const REPO_DIR = resolve(FRONTEND_DIR, '..');
/** Reports, logs and screenshots of test runs (git-ignored). */
export const RESULTS_DIR = join(FRONTEND_DIR, 'test-results');
/** The production build of the demo app (`ng build demo`). */
export const DEMO_DIST_DIR = join(FRONTEND_DIR, 'dist', 'demo', 'browser');

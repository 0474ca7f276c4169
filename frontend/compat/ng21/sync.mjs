// Copies the library sources (and the workspace's tsconfig and Vitest browser config) from the main
// workspace, so they are built and tested with this folder's Angular 21. A copy, not a path: imports must
// resolve to ./node_modules (Angular 21), never to ../../node_modules (Angular 22). The copies are git-ignored.
// It also checks that every dependency of the library is installed here, so a new one fails with a clear
// message instead of a resolution error.
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const main = join(here, '..', '..');

rmSync(join(here, 'projects'), { recursive: true, force: true });
cpSync(join(main, 'projects', 'orchestra-client'), join(here, 'projects', 'orchestra-client'), {
  recursive: true,
});
cpSync(join(main, 'vitest.browser.config.mts'), join(here, 'vitest.browser.config.mts'));
// The same compiler options as the main workspace, referencing only the library (no demo here).
const tsconfig = JSON.parse(
  readFileSync(join(main, 'tsconfig.json'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, ''),
);
tsconfig.references = tsconfig.references.filter((ref) => ref.path.includes('orchestra-client'));
writeFileSync(join(here, 'tsconfig.json'), `${JSON.stringify(tsconfig, null, 2)}\n`);

const library = JSON.parse(
  readFileSync(join(main, 'projects/orchestra-client/package.json'), 'utf8'),
);
const ours = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8'));
const installed = { ...ours.dependencies, ...ours.devDependencies };
const missing = Object.keys({ ...library.dependencies, ...library.peerDependencies }).filter(
  (name) => !(name in installed) || !existsSync(join(here, 'node_modules', name)),
);
if (missing.length > 0) {
  console.error(
    `compat/ng21: the library needs ${missing.join(', ')}: add to compat/ng21/package.json and run npm install there`,
  );
  process.exit(1);
}
console.log('compat/ng21: library sources copied');

// Test preparation (plain Node ESM, no dependencies). `npm test` runs this before vitest.
//
// Ensures AWS's DynamoDB Local emulator is present at .cache/dynamodb-local/ (git-ignored):
// DynamoDBLocal.jar + DynamoDBLocal_lib/. It ships inside the npm package
// amplify-dynamodb-simulator (folder `emulator/`), fetched with `npm pack` so nothing is installed
// into node_modules. Idempotent; prints one line.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = 'amplify-dynamodb-simulator@2.9.30';
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const target = join(root, '.cache', 'dynamodb-local');
const jar = join(target, 'DynamoDBLocal.jar');

if (existsSync(jar)) {
  console.log(`prepare: DynamoDB Local present at ${target}`);
  process.exit(0);
}

// Work next to the target (same filesystem) so the final rename cannot fail with EXDEV.
mkdirSync(dirname(target), { recursive: true });
const work = mkdtempSync(join(dirname(target), 'prepare-'));
try {
  // --json prints the tarball's file name; --pack-destination keeps it out of the repo.
  const out = execFileSync('npm', ['pack', PACKAGE, '--pack-destination', work, '--json', '--silent'], {
    cwd: work,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const filename = JSON.parse(out)[0]?.filename;
  if (typeof filename !== 'string') throw new Error(`npm pack ${PACKAGE}: unexpected output`);
  const tarball = join(work, filename.replace(/^@/, '').replace(/\//g, '-'));
  const extracted = join(work, 'x');
  mkdirSync(extracted);
  // npm tarballs put everything under package/; take only package/emulator/.
  execFileSync('tar', ['-xzf', tarball, '-C', extracted, '--strip-components=2', 'package/emulator'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (!existsSync(join(extracted, 'DynamoDBLocal.jar'))) {
    throw new Error(`${PACKAGE} has no emulator/DynamoDBLocal.jar (found: ${readdirSync(extracted).join(', ')})`);
  }
  // Move into place in one rename so a half-extracted folder is never mistaken for a good one.
  rmSync(target, { recursive: true, force: true });
  renameSync(extracted, target);
  console.log(`prepare: DynamoDB Local extracted from ${PACKAGE} to ${target}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}

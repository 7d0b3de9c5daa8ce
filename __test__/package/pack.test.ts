import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';

/** What `npm pack` puts in the tarball users install: checked file by file. */

const root = join(__dirname, '..', '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function packedFiles(): string[] {
  const out = execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return (JSON.parse(out.toString())[0].files as { path: string }[]).map((f) => f.path.replace(/\\/g, '/')).sort();
}

/** Every file a Rust source embeds with include_str!, as a path from the package root. */
function embeddedFiles(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.rs')) {
        // include_str!("x"), and the macros that call it: lua_script!("x.lua"), script!(NAME, "x.lua")
        const text = readFileSync(path, 'utf8')
          .split('\n')
          .filter((line) => !/^\s*\/\//.test(line)) // examples in doc comments embed nothing
          .join('\n');
        for (const m of text.matchAll(/(?:include_str|lua_script)!\("([^"$]+)"\)|script(?:_with_tokens)?!\(\w+, "([^"]+)"\)/g)) {
          found.push(relative(root, join(dir, m[1] ?? m[2])).replace(/\\/g, '/'));
        }
      }
    }
  };
  walk(join(root, 'src'));
  return found.sort();
}

const allowed: [RegExp, string][] = [
  [/^package\.json$/, 'the manifest'],
  [/^README\.md$/, 'the README'],
  [/^LICENSE$/, 'the license'],
  [/^index\.js$/, 'the JS entry'],
  [/^index\.d\.ts$/, 'the typings'],
  [/^nestjs-redis-native\.[a-z0-9-]+\.node$/, 'the prebuilt addon of this platform'],
  [/^nest\/dist\/[a-z.-]+\.(js|d\.ts)$/, 'the Nest module, compiled'],
  [/^nest\/dist\/adapters\/[a-z.-]+\.(js|d\.ts)$/, 'the adapters (nestjs-redis-native/adapters), compiled'],
  [/^(Cargo\.toml|Cargo\.lock|build\.rs)$/, 'what builds the addon from source'],
  [/^src\/([a-z_]+\/)?[a-z_]+\.(rs|lua|js)$/, 'the Rust sources, Lua scripts and embedded JS'],
  [/^scripts\/install\.js$/, 'the install script (source fallback)'],
];

describe('the packed tarball', () => {
  const files = packedFiles();

  it('holds only what users need: no tests, no target/, no logs, no benchmarks', () => {
    const unexpected = files.filter((f) => !allowed.some(([re]) => re.test(f)));
    assert.deepEqual(unexpected, []);
  });

  it('holds the binary, the entry points, the typings, the Nest module, the adapters, README and LICENSE', () => {
    for (const f of [
      'package.json',
      'README.md',
      'LICENSE',
      'index.js',
      'index.d.ts',
      'nest/dist/index.js',
      'nest/dist/index.d.ts',
      'nest/dist/adapters/index.js',
      'nest/dist/adapters/index.d.ts',
    ]) {
      assert.ok(files.includes(f), `${f} is packed`);
    }
    assert.ok(
      files.some((f) => /\.node$/.test(f)),
      'the prebuilt addon of this platform is packed',
    );
  });

  it('holds every file the Rust sources embed, so the source fallback can build', () => {
    const embedded = embeddedFiles();
    assert.ok(embedded.length > 10, 'include_str! files were found');
    assert.deepEqual(
      embedded.filter((f) => !files.includes(f)),
      [],
    );
    for (const f of ['Cargo.toml', 'Cargo.lock', 'build.rs', 'src/lib.rs', 'scripts/install.js']) {
      assert.ok(files.includes(f), `${f} is packed`);
    }
  });
});

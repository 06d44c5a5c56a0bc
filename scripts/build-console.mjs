#!/usr/bin/env node
// Builds the browser console (src/console, TypeScript) into dist/console, which Tollgate
// serves at /console (src/gateway/console.ts): type-checks it with its own tsconfig (DOM
// types), bundles it with esbuild (uPlot, graphql-ws and canonicalize inside: the browser
// loads nothing from elsewhere), and copies index.html. Runs in `npm install` (postinstall)
// and `npm run build`; the console's browser test runs it too.
import { execFileSync } from 'node:child_process';
import { copyFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src/console');
const out = path.join(root, 'dist/console');

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', path.join(src, 'tsconfig.json')], { stdio: 'inherit', cwd: root });

await mkdir(out, { recursive: true });
const common = { bundle: true, minify: true, platform: 'browser', target: ['chrome111', 'firefox115', 'safari16.4'], logLevel: 'warning', absWorkingDir: root };
await Promise.all([
  // console.js (an ES module) and console.css (its imported styles, uPlot's included).
  build({ ...common, entryPoints: [path.join(src, 'console.ts')], outdir: out, format: 'esm' }),
  // A classic script: GraphiQL's page runs it before GraphiQL's own bundle.
  build({ ...common, entryPoints: [path.join(src, 'graphiql-boot.ts')], outdir: out, format: 'iife' }),
]);
await copyFile(path.join(src, 'index.html'), path.join(out, 'index.html'));

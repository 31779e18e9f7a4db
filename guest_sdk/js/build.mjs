// build.mjs - builds one TypeScript/JavaScript tenant into a dwf module (ABI v1).
//
//   node guest_sdk/js/build.mjs --engine build/js/engine --python .venv/bin/python \
//        --out build/tenants/NAME.wasm SRC
//
// SRC is a .ts/.js file or a directory (its top-level .ts/.js files, not .d.ts).
// --check type-checks the sources with tsc first (against dynamic-workflows.d.ts).
// 1. esbuild bundles an entry that imports the SDK and every source file and
//    hands their exports to the SDK (workflows by export name, the default
//    export as the fetch handler), with a source map for stack traces;
// 2. the bundle becomes a C array, linked with the prebuilt engine objects
//    (QuickJS-ng, the runtime, the C SDK's journal code) by zig cc;
// 3. Wizer runs the engine's initialisation (evaluates the bundle) and
//    snapshots it, so an invocation starts with everything loaded.
// `make` builds the engine objects; `dwf build` and `make tenants` run this.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SDK_ENTRY = path.join(HERE, "sdk", "index.ts");
const SDK_DIR = path.join(HERE, "sdk");
const WIZER = path.join(HERE, "node_modules", ".bin", "wizer");
const TSC = path.join(HERE, "node_modules", ".bin", "tsc");
const MODULE_NAMES = ["dynamic-workflows", "cloudflare:workers", "cloudflare:workflows"];
const STACK_BYTES = 1024 * 1024;

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  const options = { sources: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--out" || arg === "--engine" || arg === "--python" || arg === "--work") {
      if (i + 1 >= argv.length) fail(`${arg} needs a value`);
      options[arg.slice(2)] = argv[++i];
    } else if (arg === "--no-snapshot") {
      options.noSnapshot = true;
    } else if (arg === "--check") {
      options.check = true;
    } else {
      options.sources.push(arg);
    }
  }
  if (options.sources.length !== 1) fail("name one source: a .ts/.js file or a directory of them");
  for (const required of ["out", "engine", "python"]) {
    if (!options[required]) fail(`--${required} is required`);
  }
  return options;
}

/** The tenant's source files: SRC itself, or the .ts/.js files at the top of SRC. */
function sourceFiles(src) {
  if (!fs.existsSync(src)) fail(`${src} does not exist`);
  const isSource = (name) => /\.(ts|js|mjs)$/.test(name) && !name.endsWith(".d.ts");
  if (fs.statSync(src).isFile()) {
    if (!isSource(src)) fail(`${src} is not a .ts or .js file`);
    return [path.resolve(src)];
  }
  const files = fs.readdirSync(src).filter(isSource).sort().map((name) => path.resolve(src, name));
  if (!files.length) fail(`${src} has no .ts or .js files`);
  return files;
}

/** "dynamic-workflows" and Cloudflare's module names resolve to the SDK. */
const sdkAlias = {
  name: "dwf-sdk",
  setup(build) {
    const filter = new RegExp(`^(${MODULE_NAMES.map((n) => n.replace(/[:-]/g, "\\$&")).join("|")})$`);
    build.onResolve({ filter }, () => ({ path: SDK_ENTRY }));
    build.onResolve({ filter: /^dwf-sdk-internal:hooks$/ }, () => ({ path: path.join(SDK_DIR, "hooks.ts") }));
  },
};

/** Whether any source file has a default export (a fetch handler). */
async function hasDefaultExport(files) {
  for (const file of files) {
    const result = await esbuild.build({
      entryPoints: [file], bundle: false, write: false, metafile: true, format: "esm",
      outdir: "out", logLevel: "silent",
    });
    for (const output of Object.values(result.metafile.outputs)) {
      if (output.exports?.includes("default")) return true;
    }
  }
  return false;
}

async function bundle(files, sourceRoot) {
  const entry = [
    `import "${SDK_ENTRY.replaceAll("\\", "/")}";`,
    `import { install } from "dwf-sdk-internal:hooks";`,
    ...files.map((file, i) => `import * as m${i} from ${JSON.stringify(file)};`),
    `install([${files.map((_, i) => `m${i}`).join(", ")}]);`,
  ].join("\n");
  let result;
  try {
    result = await esbuild.build({
      stdin: { contents: entry, resolveDir: sourceRoot, sourcefile: "dwf-entry.js", loader: "js" },
      bundle: true, format: "iife", target: "es2023", platform: "neutral", write: false,
      sourcemap: "external", outfile: "bundle.js", plugins: [sdkAlias], logLevel: "silent",
      mainFields: ["module", "main"], charset: "utf8", legalComments: "none",
    });
  } catch (error) {
    const messages = error.errors?.map((e) => `${e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ` : ""}${e.text}`);
    fail(`bundling failed:\n${messages ? messages.join("\n") : error.message}`);
  }
  const code = result.outputFiles.find((f) => f.path.endsWith(".js")).text;
  const map = JSON.parse(result.outputFiles.find((f) => f.path.endsWith(".map")).text);
  // Sources as a tenant knows them: relative to its source directory; the SDK's own
  // files as dynamic-workflows/<file> (the stack mapper leaves those frames out).
  const mapDir = path.dirname(path.resolve("bundle.js"));
  const sources = map.sources.map((source) => {
    const absolute = path.resolve(mapDir, source);
    if (absolute.startsWith(SDK_DIR + path.sep)) return `dynamic-workflows/${path.relative(SDK_DIR, absolute)}`;
    return path.relative(sourceRoot, absolute).replaceAll("\\", "/");
  });
  const compact = JSON.stringify({ sources, mappings: map.mappings });
  return `${code}\nglobalThis.__dwf_sourcemap = ${compact};\n`;
}

/** The bundle as a C file the engine links against (engine.h: dwf_js_bundle). */
function bundleSource(text) {
  const bytes = Buffer.from(text, "utf8");
  const lines = [];
  for (let i = 0; i < bytes.length; i += 24) {
    lines.push(Array.from(bytes.subarray(i, i + 24), (b) => `${b}`).join(","));
  }
  return `/* generated by guest_sdk/js/build.mjs: the tenant's bundle */\n#include <stdint.h>\n`
    + `const char dwf_js_bundle[] = {\n${lines.join(",\n")},0};\n`
    + `const uint32_t dwf_js_bundle_len = ${bytes.length};\n`;
}

/** tsc --noEmit over the tenant's files, with this SDK's compiler options and paths. */
function typeCheck(files, work) {
  const config = path.join(work, "tsconfig.json");
  fs.writeFileSync(config, JSON.stringify({
    extends: path.join(HERE, "tsconfig.json"),
    include: [...files, path.join(HERE, "dynamic-workflows.d.ts")],
  }));
  try {
    execFileSync(TSC, ["-p", config, "--pretty", "false"], { stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    fail(`type errors:\n${String(error.stdout).trim()}`);
  }
}

function run(command, args) {
  try {
    execFileSync(command, args, { stdio: ["ignore", "inherit", "inherit"] });
  } catch {
    fail(`${path.basename(command)} failed: ${command} ${args.join(" ")}`);
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const src = options.sources[0];
  const files = sourceFiles(src);
  const sourceRoot = fs.statSync(src).isDirectory() ? path.resolve(src) : path.dirname(path.resolve(src));
  const out = path.resolve(options.out);
  const work = path.resolve(options.work ?? `${out.replace(/\.wasm$/, "")}.build`);
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(path.dirname(out), { recursive: true });

  if (options.check) typeCheck(files, work);
  const text = await bundle(files, sourceRoot);
  fs.writeFileSync(path.join(work, "bundle.js"), text);
  const bundleC = path.join(work, "bundle.c");
  fs.writeFileSync(bundleC, bundleSource(text));

  const engine = path.resolve(options.engine);
  const objects = fs.readFileSync(path.join(engine, "objects.txt"), "utf8").split(/\s+/).filter(Boolean)
    .map((name) => path.join(engine, name));
  if (await hasDefaultExport(files)) objects.push(path.join(engine, "fetch_export.o"));
  const raw = options.noSnapshot ? out : path.join(work, "engine.wasm");
  run(options.python, ["-m", "ziglang", "cc", "--target=wasm32-wasi", "-mexec-model=reactor",
    "-O2", "-g0", `-Wl,-z,stack-size=${STACK_BYTES}`, "-o", raw, bundleC, ...objects]);
  if (!options.noSnapshot) run(WIZER, [raw, "-o", out]);
}

await main();

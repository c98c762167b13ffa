#!/usr/bin/env node
// A stand-in for the native `solc` binary, built on the npm `solc` package (solc-js)
// pinned in this folder's package.json. It understands exactly what py-solc-x asks of a
// compiler binary:
//
//   solc --version                      prints the same two lines native solc prints
//   solc --standard-json [options]      reads standard JSON input on stdin, writes the
//                                       output JSON on stdout
//
// Why not the `solcjs` command that ships with the package: it prints a
// ">>> Cannot retry compilation with SMT because there are no SMT solvers available."
// line on stdout before the JSON, and it calls process.exit() before a piped stdout is
// drained, so output over 64 KiB arrives cut. Here the output is written with
// fs.writeSync in a loop (retrying on EAGAIN) and the process ends on its own.
//
// Imports: the Python side (backend/chain/compiler.py) puts every source's content into
// the input, so no import callback is needed there. For other callers a callback resolves
// `@scope/...` and bare package paths against this folder's node_modules, and other paths
// against --base-path (default: the working directory) and each --include-path.
"use strict";

const fs = require("fs");
const path = require("path");

const HERE = __dirname;
const NODE_MODULES = path.join(HERE, "node_modules");

function loadSolc() {
  try {
    return require(path.join(NODE_MODULES, "solc"));
  } catch (err) {
    process.stderr.write(
      `solc-js is not installed in ${NODE_MODULES}: run \`npm ci\` in ${HERE}\n(${err.message})\n`
    );
    process.exit(2);
  }
  return undefined;
}

function sleepMs(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

// Write all of `text` to a file descriptor, however large, even if it is non-blocking.
function writeAll(fd, text) {
  const buf = Buffer.from(text, "utf8");
  let offset = 0;
  while (offset < buf.length) {
    try {
      offset += fs.writeSync(fd, buf, offset, buf.length - offset);
    } catch (err) {
      if (err.code === "EAGAIN") {
        sleepMs(5);
        continue;
      }
      throw err;
    }
  }
}

// Read all of stdin, however large, even if it is non-blocking.
function readAllStdin() {
  const chunks = [];
  const buf = Buffer.alloc(1 << 16);
  for (;;) {
    let n;
    try {
      n = fs.readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      if (err.code === "EAGAIN") {
        sleepMs(5);
        continue;
      }
      if (err.code === "EOF") {
        break;
      }
      throw err;
    }
    if (n === 0) {
      break;
    }
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString("utf8");
}

function parseArgs(argv) {
  const opts = { mode: null, basePath: null, includePaths: [] };
  // Options that native solc accepts with a value; py-solc-x may pass some of them.
  const withValue = new Set([
    "--base-path",
    "--include-path",
    "--allow-paths",
    "--output-dir",
    "-o",
  ]);
  for (let i = 0; i < argv.length; i += 1) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    } else if (withValue.has(arg)) {
      i += 1;
      value = argv[i];
    }
    switch (arg) {
      case "--version":
        opts.mode = opts.mode || "version";
        break;
      case "--standard-json":
        opts.mode = "standard-json";
        break;
      case "--help":
        opts.mode = opts.mode || "help";
        break;
      case "--base-path":
        opts.basePath = value;
        break;
      case "--include-path":
        opts.includePaths.push(value);
        break;
      case "--allow-paths":
      case "--output-dir":
      case "-o":
      case "--overwrite":
      case "-":
        break; // accepted and ignored: output always goes to stdout
      default:
        process.stderr.write(`unrecognised option '${arg}'\n`);
        process.exit(1);
    }
  }
  return opts;
}

function makeImportCallback(opts) {
  const roots = [];
  roots.push(path.resolve(opts.basePath || process.cwd()));
  for (const p of opts.includePaths) {
    roots.push(path.resolve(p));
  }
  roots.push(NODE_MODULES);
  return function findImports(sourceUnitName) {
    if (path.isAbsolute(sourceUnitName)) {
      return { error: `absolute import paths are not allowed: ${sourceUnitName}` };
    }
    for (const root of roots) {
      const candidate = path.resolve(root, sourceUnitName);
      if (candidate !== root && !candidate.startsWith(root + path.sep)) {
        continue; // would escape the root
      }
      try {
        return { contents: fs.readFileSync(candidate, "utf8") };
      } catch (_err) {
        // try the next root
      }
    }
    return { error: `File not found: ${sourceUnitName} (searched ${roots.join(", ")})` };
  };
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.mode === "help" || opts.mode === null) {
    writeAll(
      1,
      "solc-js wrapper: behaves like `solc --version` and `solc --standard-json`\n" +
        "usage: solc-standard-json.js --version | --standard-json " +
        "[--base-path P] [--include-path P]... < input.json\n"
    );
    return opts.mode === "help" ? 0 : 1;
  }
  const solc = loadSolc();
  if (opts.mode === "version") {
    writeAll(1, `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
    return 0;
  }
  const input = readAllStdin();
  const output = solc.compile(input, { import: makeImportCallback(opts) });
  writeAll(1, output.endsWith("\n") ? output : `${output}\n`);
  return 0;
}

process.exitCode = main();

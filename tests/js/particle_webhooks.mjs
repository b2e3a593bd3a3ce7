#!/usr/bin/env node
// Particle's own JavaScript client (particle-api-js), one call per run, for the Python tests
// that prove Hookwire's webhook API compatible with it (tests/particle_js.py drives this).
//
//   node particle_webhooks.mjs --base-url URL [--token T] [--product P | --org O] STEP ARGS...
//
// The token may come from PARTICLE_TOKEN instead of --token (it stays out of `ps`); an empty
// one sends no Authorization header at all. STEP is one of:
//
//   list                          particle.listWebhooks
//   create SPEC                   particle.createWebhook(SPEC)
//   get ID                        particle.get (the client has no getWebhook)
//   delete ID                     particle.deleteWebhook
//   integration-list              particle.listIntegrations
//   integration-create SPEC       particle.createIntegration(SPEC)
//   integration-edit ID SPEC      particle.editIntegration({integrationId: ID, ...SPEC})
//   integration-delete ID         particle.deleteIntegration
//
// SPEC is a JSON object, inline (starting with "{") or the name of a file holding one: the
// options the client method takes, e.g. {"event": "temp", "url": "http://...", "hook": {...}}.
//
// Prints one JSON line on stdout and exits 0 with the client's resolved value,
//   {"ok": true, "statusCode": 200, "body": ...}
// or 1 with what the client rejected with (statusCode null for a network error),
//   {"ok": false, "statusCode": 404, "message": "HTTP error 404 from ... - no such hook",
//    "errorDescription": "no such hook", "body": {"error": "...", ...}}
// and 2, with a message on stderr, when the command line is wrong.

import { readFileSync } from 'node:fs';
import Particle from 'particle-api-js';

const USAGE = 'usage: particle_webhooks.mjs --base-url URL [--token T] [--product P | --org O] STEP ARGS...';

function usage(problem) {
    process.stderr.write(`${problem}\n${USAGE}\n`);
    process.exit(2);
}

function parseArgs(argv) {
    const options = { token: process.env.PARTICLE_TOKEN ?? '', baseUrl: process.env.PARTICLE_BASE_URL };
    const positional = [];
    for (let i = 0; i < argv.length; i += 1) {
        const flag = { '--base-url': 'baseUrl', '--token': 'token', '--product': 'product', '--org': 'org' }[argv[i]];
        if (flag === undefined) {
            positional.push(argv[i]);
        } else if (i + 1 >= argv.length) {
            usage(`${argv[i]} needs a value`);
        } else {
            options[flag] = argv[i + 1];
            i += 1;
        }
    }
    if (!options.baseUrl) {
        usage('no base URL: give --base-url or PARTICLE_BASE_URL');
    }
    const [step, ...args] = positional;
    return { options, step, args };
}

function spec(text) {
    if (text === undefined) {
        usage('this step needs a SPEC (inline JSON or a file name)');
    }
    const source = text.trimStart().startsWith('{') ? text : readFileSync(text, 'utf8');
    return JSON.parse(source);
}

function id(text) {
    if (text === undefined) {
        usage('this step needs an ID');
    }
    return text;
}

const STEPS = {
    list: (particle, scope) => particle.listWebhooks({ product: scope.product }),
    create: (particle, scope, [file]) => particle.createWebhook({ ...spec(file), ...scope }),
    get: (particle, scope, [hookId]) => {
        const base = scope.product ? `/v1/products/${scope.product}/webhooks` : '/v1/webhooks';
        return particle.get({ uri: `${base}/${id(hookId)}` });
    },
    delete: (particle, scope, [hookId]) => particle.deleteWebhook({ hookId: id(hookId), product: scope.product }),
    'integration-list': (particle, scope) => particle.listIntegrations(scope),
    'integration-create': (particle, scope, [file]) => particle.createIntegration({ ...spec(file), ...scope }),
    'integration-edit': (particle, scope, [integrationId, file]) =>
        particle.editIntegration({ ...spec(file), integrationId: id(integrationId), ...scope }),
    'integration-delete': (particle, scope, [integrationId]) =>
        particle.deleteIntegration({ integrationId: id(integrationId), ...scope }),
};

// What the client rejected with, as JSON: Agent.js puts the parsed error body in `body` and
// hangs node-fetch's Response on it, which is left out (it holds sockets, not data).
function describeError(error) {
    if (error === null || typeof error !== 'object' || !('statusCode' in error || 'errorDescription' in error)) {
        return { ok: false, statusCode: null, message: String(error?.message ?? error), body: null };
    }
    let body = null;
    if (error.body && typeof error.body === 'object' && !(error.body instanceof Error)) {
        const { response, ...rest } = error.body;
        body = rest;
    }
    return {
        ok: false,
        statusCode: error.statusCode ?? null,
        message: error.message,
        errorDescription: error.shortErrorDescription ?? null,
        body,
        cause: error.body instanceof Error ? `${error.body.name}: ${error.body.message}` : null,
    };
}

async function main() {
    const { options, step, args } = parseArgs(process.argv.slice(2));
    const run = STEPS[step];
    if (run === undefined) {
        usage(`unknown step ${JSON.stringify(step)}; one of: ${Object.keys(STEPS).join(', ')}`);
    }
    const particle = new Particle({ baseUrl: options.baseUrl });
    if (options.token) {
        particle.setDefaultAuth(options.token);
    }
    if (options.org !== undefined && !step.startsWith('integration-')) {
        usage('--org is for the integration steps: the client has no org webhooks');
    }
    const scope = {};
    if (options.product !== undefined) {
        scope.product = options.product;
    }
    if (options.org !== undefined) {
        scope.org = options.org;
    }
    let result;
    try {
        const resolved = await run(particle, scope, args);
        result = { ok: true, statusCode: resolved.statusCode, body: resolved.body };
    } catch (error) {
        result = describeError(error);
    }
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exitCode = result.ok ? 0 : 1;
}

main();

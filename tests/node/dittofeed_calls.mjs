// Drives the official Dittofeed Node SDK (@dittofeed/sdk-node) for the tests.
//
// stdin: {"host": "<trackgate URL>", "writeKey": "Basic <token>",
//         "calls": [{"method": "identify"|"track"|"page"|"screen", "params": {...}}, ...]}
// The calls are made in groups of at most 4, each group followed by `await flush()` (the SDK
// flushes a full batch of 5 by itself, unawaited, and a failure there would crash the process).
// stdout: {"sdk", "version", "flushes": [{"ok": true} | {"ok": false, "error": "..."}]}
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { DittofeedSdk } = require("@dittofeed/sdk-node");
const { version } = require("@dittofeed/sdk-node/package.json");

const GROUP = 4;

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  process.on("unhandledRejection", (error) => {
    process.stderr.write(`unhandled rejection: ${error}\n`);
    process.exit(2);
  });
  const spec = await readStdin();
  await DittofeedSdk.init({ host: spec.host, writeKey: spec.writeKey });
  const flushes = [];
  for (let start = 0; start < spec.calls.length; start += GROUP) {
    for (const call of spec.calls.slice(start, start + GROUP)) {
      DittofeedSdk[call.method](call.params);
    }
    try {
      await DittofeedSdk.flush();
      flushes.push({ ok: true });
    } catch (error) {
      flushes.push({ ok: false, error: String(error) });
    }
  }
  process.stdout.write(JSON.stringify({ sdk: "@dittofeed/sdk-node", version, flushes }) + "\n");
}

await main();

// `npm test`: runs every test file here with Node's test runner, one file at a time (each starts
// roomcast processes; the machine may have few cores). Node 20 and 21 have their WebSocket behind
// --experimental-websocket; from Node 22 it is global. The tests pass it to the library explicitly.
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 10)) {
  console.error(`roomcast.js tests need Node.js 20.10 or later (this is ${process.versions.node})`);
  process.exit(1);
}
const flags = major < 22 ? ["--experimental-websocket"] : [];
const files = readdirSync(here)
  .filter((f) => f.endsWith(".test.js"))
  .sort()
  .map((f) => join(here, f));
const result = spawnSync(process.execPath, [...flags, "--test", "--test-concurrency=1", ...files], {
  stdio: "inherit",
});
process.exit(result.status ?? 1);

// Builds a JavaScript warren plugin with componentize-js's library API (the
// `jco componentize` CLI failed on this setup):
//   node componentize.mjs SOURCE.js WIT_DIR OUT.wasm [--http]
// Used by plugins/examples/build; resolves componentize-js from this folder's
// node_modules (`npm install` here installs the locked versions).
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";

const [source, witPath, out, http] = process.argv.slice(2);
if (!source || !witPath || !out || (http !== undefined && http !== "--http")) {
  console.error("usage: node componentize.mjs SOURCE.js WIT_DIR OUT.wasm [--http]");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(witPath),
  worldName: "plugin",
  // Without --http, no fetch(): leaving it out keeps wasi:http out of the
  // component's imports. No plugin serves HTTP: never the incoming handler.
  disableFeatures: http ? ["fetch-event"] : ["http", "fetch-event"],
});
await writeFile(out, component);

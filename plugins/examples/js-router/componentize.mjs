// Builds a JavaScript warren plugin with componentize-js's library API (the
// `jco componentize` CLI failed on this setup):
//   node componentize.mjs SOURCE.js WIT_DIR OUT.wasm
// Used by plugins/examples/build; resolves componentize-js from this folder's
// node_modules (`npm install` here installs the locked versions).
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";

const [source, witPath, out] = process.argv.slice(2);
if (!source || !witPath || !out) {
  console.error("usage: node componentize.mjs SOURCE.js WIT_DIR OUT.wasm");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(witPath),
  worldName: "plugin",
  // The examples need no fetch(): leaving it out keeps wasi:http out of the
  // component's imports.
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);

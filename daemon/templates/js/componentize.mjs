// `npm run build`: builds {{module}}.wasm from plugin.js with componentize-js,
// against warren's contract in wit/ (world `plugin`).
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const { component } = await componentize({
  sourcePath: here("plugin.js"),
  witPath: here("wit"),
  worldName: "plugin",
  // No fetch(): leaving it out keeps wasi:http out of the component's imports.
  // To send HTTP requests, delete this line (warren allows them only to the
  // plugin's allowed_hosts).
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(here("{{module}}.wasm"), component);

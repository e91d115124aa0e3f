// ES module resolution through NODE_PATH, as Lambda's Node.js runtimes (18 and later) do it:
// plain Node.js ignores NODE_PATH for `import`, so a handler importing a package from a layer
// (/opt/nodejs/node_modules) would fail here and work in Lambda. Registered by bootstrap.mjs.
//
// A bare specifier that normal resolution cannot find is looked up in each NODE_PATH entry
// named node_modules, in order, the entry that holds the package resolving it (its
// package.json "exports" and all).

import { existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const SEARCHED = (process.env.NODE_PATH ?? "")
  .split(path.delimiter)
  .filter((entry) => entry && path.basename(entry) === "node_modules");

function isBare(specifier) {
  return !/^(\.{0,2}\/|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier);
}

function packageName(specifier) {
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
}

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !isBare(specifier)) throw error;
    const name = packageName(specifier);
    for (const entry of SEARCHED) {
      if (!existsSync(path.join(entry, name))) continue;
      // Resolving from a file directly inside ENTRY searches ENTRY/node_modules, then
      // ENTRY itself (the parent's node_modules): where the package is.
      const parentURL = pathToFileURL(path.join(entry, "[node-path].mjs")).href;
      return nextResolve(specifier, { ...context, parentURL });
    }
    throw error;
  }
}

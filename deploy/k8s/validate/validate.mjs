// Checks rendered manifests (kubectl kustomize output, one file per
// argument) against the Kubernetes API's schemas, two ways:
//  - kubernetes-models' JSON schema validators: types, enums, formats and
//    required fields;
//  - TypeScript's excess-property check against kubernetes-types: every
//    field must exist, so a misspelt securityContext key fails instead of
//    being dropped by the API server.
// Exits 1 naming the file, object and field of each problem.
//   node validate.mjs RENDERED.yaml...
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
let problems = 0;
const declarations = [];
const imports = new Map();

// "networking.k8s.io/v1" -> ["networking.k8s.io/v1", "networking/v1"]; "v1" -> ["v1", "core/v1"]
function modulePaths(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  return group
    ? [`${group}/${version}`, `${group.replace(/\.k8s\.io$/, "")}/${version}`]
    : [version, `core/${version}`];
}

for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.error(`${file}: ${doc.errors[0].message}`);
      problems++;
      continue;
    }
    const object = doc.toJS();
    if (object === null) continue;
    // kustomize wraps a generated Secret's base64 at 70 columns; the API
    // server's decoder (Go's encoding/base64) skips the line breaks, the
    // "byte" format's pattern does not.
    if (object.kind === "Secret" && object.data)
      for (const key of Object.keys(object.data))
        object.data[key] = String(object.data[key]).replace(/\n/g, "");
    const where = `${file}: ${object.kind} ${object.metadata?.name}`;
    const [modelsPath, typesPath] = modulePaths(object.apiVersion ?? "");
    let Model;
    try {
      Model = (await import(`kubernetes-models/${modelsPath}`))[object.kind];
    } catch {
      Model = undefined;
    }
    if (!Model) {
      console.error(`${where}: no schema for ${object.apiVersion} ${object.kind}`);
      problems++;
      continue;
    }
    try {
      new Model(object).validate();
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      problems++;
    }
    const alias = `${typesPath.replace(/\W/g, "_")}_${object.kind}`;
    imports.set(alias, `import type { ${object.kind} as ${alias} } from "kubernetes-types/${typesPath}";`);
    declarations.push(`// ${where}\nexport const m${declarations.length}: ${alias} = ${JSON.stringify(object, null, 1)};`);
  }
}

// One TypeScript file with each object as a typed literal; tsc reports
// the first unknown property of each literal (and any type mismatch).
// Beside node_modules, where tsc resolves kubernetes-types.
const dir = mkdtempSync(join(import.meta.dirname, "tmp-"));
try {
  const source = join(dir, "manifests.ts");
  writeFileSync(source, [...imports.values(), ...declarations].join("\n") + "\n");
  const tsc = require.resolve("typescript/bin/tsc");
  const r = spawnSync(process.execPath, [tsc, "--noEmit", "--strict", "--skipLibCheck",
    "--module", "esnext", "--moduleResolution", "bundler", source], { encoding: "utf8" });
  if (r.status !== 0) {
    // Name the object: the line before each reported declaration says which.
    const lines = readFileSync(source, "utf8").split("\n");
    for (const m of (r.stdout + r.stderr).matchAll(/manifests\.ts\((\d+),\d+\): (.*)/g)) {
      let at = Number(m[1]) - 1;
      while (at > 0 && !lines[at].startsWith("// ")) at--;
      console.error(`${lines[at].slice(3)}: ${m[2]}`);
      problems++;
    }
    if (problems === 0) {
      console.error(r.stdout + r.stderr);
      problems++;
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

if (problems) {
  console.error(`${problems} problem(s)`);
  process.exit(1);
}
console.log(`${declarations.length} objects valid`);

// Starts `sdrt serve` on a free loopback port with the reference model sd1-tiny; resolves to its base URL.
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const root = resolve(import.meta.dirname, "../..");
export const sdrt = process.env.SDRT_BIN || join(root, "build/sdrt");
export const model = resolve(root, "../shared/reference/models/sd1-tiny");
export const apiKey = "node-test-key";

export function startServer() {
  const out = mkdtempSync(join(tmpdir(), "sdrt-node-"));
  const child = spawn(sdrt, ["serve", "--resource-path", model, "--port", "0", "--output-dir", out,
                             "--disable-safety", "--api-key", apiKey], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error("sdrt serve did not start in 60 s")), 60000);
    let text = "";
    child.stdout.on("data", chunk => {
      text += chunk;
      const m = text.match(/listening on (http:\/\/[0-9.]+:\d+)/);
      if (m) { clearTimeout(timer); ok({ url: m[1], stop: () => child.kill("SIGTERM") }); }
    });
    child.on("exit", code => { clearTimeout(timer); fail(new Error(`sdrt serve exited with ${code}`)); });
  });
}

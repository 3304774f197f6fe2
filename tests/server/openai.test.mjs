// The official openai npm client, unchanged, against `sdrt serve` (baseURL pointed at it).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import OpenAI, { toFile } from "openai";
import { startServer, apiKey } from "./server.mjs";

let server, client;
before(async () => {
  server = await startServer();
  client = new OpenAI({ apiKey, baseURL: server.url + "/v1" });
});
after(() => server.stop());

const isPng = buf => buf.subarray(1, 4).toString() === "PNG";

test("models.list names the served model", async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ["sd1-tiny"]);
});

test("images.generate returns b64_json PNGs and URLs", async () => {
  const r = await client.images.generate({ model: "sd1-tiny", prompt: "a red circle", n: 2, size: "64x64",
                                           response_format: "b64_json", steps: 2, seed: 5 });
  assert.equal(r.data.length, 2);
  assert.ok(isPng(Buffer.from(r.data[0].b64_json, "base64")));
  const u = await client.images.generate({ prompt: "a red circle", size: "64x64", response_format: "url", steps: 2 });
  const png = await fetch(u.data[0].url, { headers: { Authorization: `Bearer ${apiKey}` } });
  assert.equal(png.status, 200);
  assert.ok(isPng(Buffer.from(await png.arrayBuffer())));
});

test("images.edit takes a multipart image", async () => {
  const g = await client.images.generate({ prompt: "a square", size: "64x64", response_format: "b64_json", steps: 2 });
  const image = await toFile(Buffer.from(g.data[0].b64_json, "base64"), "in.png", { type: "image/png" });
  const r = await client.images.edit({ image, prompt: "a blue square", response_format: "b64_json", steps: 2 });
  assert.equal(r.data.length, 1);
  assert.ok(isPng(Buffer.from(r.data[0].b64_json, "base64")));
});

test("errors come back as OpenAI errors naming the field", async () => {
  await assert.rejects(client.images.generate({ prompt: "x", size: "huge" }),
                       e => e instanceof OpenAI.BadRequestError && e.param === "size");
  const bad = new OpenAI({ apiKey: "wrong", baseURL: server.url + "/v1", maxRetries: 0 });
  await assert.rejects(bad.models.list(), e => e instanceof OpenAI.AuthenticationError);
});

// The web page in a real headless Chromium (Debian's /usr/bin/chromium driven by puppeteer-core): type a
// prompt, answer the API-key prompt, click generate, wait for the image, check its size, save a screenshot.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { tmpdir } from "node:os";
import puppeteer from "puppeteer-core";
import { startServer, apiKey } from "./server.mjs";

let server, browser;
before(async () => {
  server = await startServer();
  browser = await puppeteer.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
                                     args: ["--no-sandbox", "--disable-gpu"] });
});
after(async () => { await browser?.close(); server.stop(); });

test("generate an image from the page", async () => {
  const page = await browser.newPage();
  page.on("dialog", d => d.accept(apiKey));  // the page asks for the key once
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").options.length > 0, { timeout: 30000 });
  await page.type("#prompt", "a red circle on a blue background");
  await page.$eval("#steps", e => { e.value = "4"; });
  await page.$eval("#seed", e => { e.value = "1"; });
  await page.click("#generate");
  await page.waitForSelector("img.result", { timeout: 60000 });
  const size = await page.$eval("img.result", img => img.decode().then(() => [img.naturalWidth, img.naturalHeight]));
  assert.deepEqual(size, [64, 64]);
  const status = await page.$eval("#status", e => e.textContent);
  assert.equal(status, "Done");
  const shot = process.env.SCREENSHOT || join(tmpdir(), "sdrt-serve-page.png");
  await page.screenshot({ path: shot });
  console.log("screenshot:", shot);
});

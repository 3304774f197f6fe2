// The page served at /: plain HTML and JavaScript, no external resources. It calls the A1111 API
// (txt2img/img2img, progress) with the API key it asks for once (kept in localStorage).
#include "server/server.hpp"

namespace sdrt::server {

const char* web_page_html() {
  return R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sdrt</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:sans-serif;max-width:56em;margin:1em auto;padding:0 1em}
label{display:block;margin:.4em 0}input,select,textarea{font:inherit}textarea{width:100%}
#bar{width:100%;height:1em}#out img{margin:.3em;border:1px solid #888;image-rendering:pixelated}
.row{display:flex;gap:1em;flex-wrap:wrap}.err{color:#b00}pre{white-space:pre-wrap;font-size:.85em}
</style></head><body>
<h1>sdrt</h1>
<form id="form">
<label>Prompt <textarea id="prompt" rows="2" required></textarea></label>
<label>Negative prompt <textarea id="negative" rows="1"></textarea></label>
<div class="row">
<label>Width <input id="width" type="number" min="8" step="8" value="64"></label>
<label>Height <input id="height" type="number" min="8" step="8" value="64"></label>
<label>Steps <input id="steps" type="number" min="1" value="20"></label>
<label>Guidance <input id="cfg" type="number" min="0" step="0.5" value="7"></label>
<label>Seed <input id="seed" type="number" min="-1" value="-1"></label>
<label>Sampler <select id="sampler"></select></label>
<label>Model <select id="model"></select></label>
</div>
<div class="row">
<label>Starting image <input id="image" type="file" accept="image/png,image/jpeg"></label>
<label>Strength <input id="strength" type="number" min="0" max="1" step="0.05" value="0.75"></label>
</div>
<button id="generate" type="submit">Generate</button> <button id="stop" type="button">Interrupt</button>
</form>
<progress id="bar" max="1" value="0"></progress>
<p id="status"></p>
<div id="out"></div>
<script>
"use strict";
const $ = id => document.getElementById(id);
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = localStorage.getItem("sdrt-api-key");
  if (key) h.Authorization = "Bearer " + key;
  return h;
}
async function api(method, path, body) {
  for (let attempt = 0; attempt < 2; ++attempt) {
    const r = await fetch(path, {method, headers: headers(), body: body && JSON.stringify(body)});
    if (r.status === 401 && attempt === 0) {
      const key = prompt("This server needs an API key:");
      if (key === null) break;
      localStorage.setItem("sdrt-api-key", key);
      continue;
    }
    const data = await r.json();
    if (!r.ok) throw new Error(data.detail || (data.error && data.error.message) || r.statusText);
    return data;
  }
  throw new Error("an API key is needed");
}
function fill(select, names, selected) {
  select.replaceChildren(...names.map(n => new Option(n, n, false, n === selected)));
}
async function setup() {
  try {
    const [samplers, models, options] = await Promise.all(
        [api("GET", "/sdapi/v1/samplers"), api("GET", "/sdapi/v1/sd-models"), api("GET", "/sdapi/v1/options")]);
    fill($("sampler"), ["(model default)", ...samplers.map(s => s.name)], "(model default)");
    fill($("model"), models.map(m => m.title), options.sd_model_checkpoint);
  } catch (e) { $("status").textContent = e.message; $("status").className = "err"; }
}
function readFile(file) {
  return new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result); r.onerror = fail; r.readAsDataURL(file);
  });
}
let polling = null;
async function poll() {
  try {
    const p = await api("GET", "/sdapi/v1/progress");
    $("bar").value = p.progress;
    if (p.state.sampling_steps) $("status").textContent = `Step ${p.state.sampling_step} of ${p.state.sampling_steps}`;
  } catch (e) { /* the generation request reports errors */ }
}
$("stop").onclick = () => api("POST", "/sdapi/v1/interrupt", {}).catch(() => {});
$("form").onsubmit = async ev => {
  ev.preventDefault();
  const body = {prompt: $("prompt").value, negative_prompt: $("negative").value, width: +$("width").value,
                height: +$("height").value, steps: +$("steps").value, cfg_scale: +$("cfg").value, seed: +$("seed").value,
                override_settings: {sd_model_checkpoint: $("model").value}};
  if ($("sampler").selectedIndex > 0) body.sampler_name = $("sampler").value;
  let path = "/sdapi/v1/txt2img";
  if ($("image").files.length) {
    body.init_images = [await readFile($("image").files[0])];
    body.denoising_strength = +$("strength").value;
    path = "/sdapi/v1/img2img";
  }
  $("generate").disabled = true; $("status").className = ""; $("status").textContent = "Queued"; $("bar").value = 0;
  polling = setInterval(poll, 500);
  try {
    const r = await api("POST", path, body);
    const info = JSON.parse(r.info);
    $("bar").value = 1; $("status").textContent = "Done";
    r.images.forEach((b64, i) => {
      const fig = document.createElement("figure");
      const img = new Image(); img.src = "data:image/png;base64," + b64; img.alt = body.prompt;
      img.className = "result";
      const a = document.createElement("a"); a.href = img.src; a.download = `sdrt-${info.all_seeds[i]}.png`;
      a.textContent = "download";
      const pre = document.createElement("pre"); pre.textContent = info.infotexts[i];
      fig.append(img, document.createElement("br"), a, pre);
      $("out").prepend(fig);
    });
  } catch (e) {
    $("status").textContent = e.message; $("status").className = "err";
  } finally {
    clearInterval(polling); $("generate").disabled = false;
  }
};
setup();
</script></body></html>
)HTML";
}

}  // namespace sdrt::server

// fillgap web app: paint a mask over a picture, send both to /api/inpaint, keep going on the result.
// No framework and no build step: one page, one script, served by `fillgap serve`.
"use strict";

const $ = (id) => document.getElementById(id);
const el = {
  file: $("file"), brush: $("brush"), eraser: $("eraser"), size: $("size"), sizeValue: $("size-value"),
  undo: $("undo"), redo: $("redo"), clear: $("clear"), zoomIn: $("zoom-in"), zoomOut: $("zoom-out"),
  zoomFit: $("zoom-fit"), zoomValue: $("zoom-value"), run: $("run"), compare: $("compare"), cancel: $("cancel"), model: $("model"),
  download: $("download"), message: $("message"), viewport: $("viewport"), hint: $("drop-hint"),
  stage: $("stage"), picture: $("picture"), original: $("original"), mask: $("mask"), cursor: $("cursor"),
  info: $("info"), busy: $("busy"), soft: $("soft"), maskFile: $("mask-file"), maskSave: $("mask-save"),
  format: $("format"), divider: $("divider"),
};
const PAINT = "rgb(255, 60, 170)";  // shown at the canvas' CSS opacity; exported as white
const ctx = el.mask.getContext("2d");

// History: each entry is a picture plus the strokes painted on it since it appeared. A stroke
// adds an entry that shares the picture; a fill adds one with the result and no strokes. Undo and
// redo move through the list, so a fill can be undone like a stroke. Strokes are kept as points,
// not pixels: a 12 MP mask snapshot per stroke would cost 48 MB.
const state = {
  name: "", width: 0, height: 0, originalUrl: "",
  history: [], index: -1,
  tool: "brush", size: 40, zoom: 1,
  drawing: null, busy: false, comparing: false, fills: 0,
  abort: null, secondsPerMegapixel: 0,  // the fill in flight; the last fill's pace, for estimates
  split: 0.5,  // before/after divider, as a fraction of the picture's width from the left
  splitting: false, spaceHeld: false, pan: null,
  limits: { max_upload_bytes: Infinity, max_pixels: Infinity },
};

const current = () => state.history[state.index];

// The server's limits, so an oversized picture is refused here with a message, before upload.
// And the fill methods it offers: the one it was started with first, then the registered others.
const serverInfo = fetch("/api/models").then((r) => r.json()).then((body) => {
  if (body.limits) state.limits = body.limits;
  if (body.loaded && state.index < 0) el.info.textContent = `No picture. Model: ${body.loaded.name}`;
  const loaded = body.loaded ? body.loaded.name : "";
  const names = [loaded, ...(body.registered || []).filter((n) => n !== loaded)].filter(Boolean);
  el.model.replaceChildren(...names.map((name, i) => {
    const option = document.createElement("option");
    option.value = i === 0 ? "" : name;  // "": the server's own model, no field sent
    option.textContent = name;
    return option;
  }));
  el.model.disabled = names.length < 2;
}).catch(() => {});

function setMessage(text, kind = "error") {
  el.message.textContent = text || "";
  el.message.className = kind;
}

function updateUi() {
  const has = state.index >= 0;
  el.undo.disabled = !has || state.index === 0 || state.busy;
  el.redo.disabled = !has || state.index >= state.history.length - 1 || state.busy;
  el.clear.disabled = !has || current().strokes.length === 0 || state.busy;
  el.run.disabled = !has || state.busy;
  el.compare.disabled = !has || state.history.every((e) => e.image === state.history[0].image);
  el.download.disabled = !has || current().image === state.history[0].image;
  el.brush.classList.toggle("active", state.tool === "brush");
  el.eraser.classList.toggle("active", state.tool === "eraser");
  el.cursor.classList.toggle("eraser", state.tool === "eraser");
  el.maskSave.disabled = !has || current().strokes.length === 0;
  el.compare.setAttribute("aria-pressed", String(state.comparing));
  document.body.classList.toggle("comparing", state.comparing);
  // The fill stays shown; the original covers it left of the divider.
  el.original.hidden = !state.comparing;
  el.divider.hidden = !state.comparing;
  el.stage.style.setProperty("--split", `${(state.split * 100).toFixed(3)}%`);
  document.body.classList.toggle("panning", state.spaceHeld);
  el.busy.hidden = !state.busy;
  el.cancel.hidden = !state.busy;
  document.body.classList.toggle("busy", state.busy);
  document.body.dataset.state = state.busy ? "busy" : has ? "ready" : "empty";
  // Fills in the picture shown: an undone fill no longer counts (state.fills counts them all).
  const shown = has ? state.history.slice(0, state.index + 1).filter((e) => e.fill).length : 0;
  document.body.dataset.fills = String(shown);
  el.sizeValue.textContent = String(state.size);
  el.zoomValue.textContent = `${Math.round(state.zoom * 100)}%`;
  if (has) {
    const fills = shown === 1 ? "1 fill" : `${shown} fills`;
    el.info.textContent = `${state.name}: ${state.width} x ${state.height} px, ${fills}` +
      (state.comparing ? " (original left of the divider, fill right)" : "");
  }
}

// ---- opening a picture --------------------------------------------------------------------

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("undecodable"));
    img.src = url;
  });
}

async function openFile(file) {
  if (!file) return;
  await serverInfo;
  if (state.busy) return setMessage("Wait for the fill to finish before opening another picture.");
  if (file.type && !file.type.startsWith("image/")) {
    return setMessage(`${file.name} is not a picture (${file.type}).`);
  }
  if (file.size > state.limits.max_upload_bytes) {
    return setMessage(`${file.name} is ${mb(file.size)}; this server accepts up to ` +
      `${mb(state.limits.max_upload_bytes)} (start it with a larger --max-upload-mb).`);
  }
  const url = URL.createObjectURL(file);
  let img;
  try {
    img = await loadImage(url);
  } catch {
    URL.revokeObjectURL(url);
    return setMessage(`This browser cannot show ${file.name}: open a PNG, JPEG or WebP picture.`);
  }
  // naturalWidth/Height follow the EXIF orientation, as the server's decoder does.
  const w = img.naturalWidth, h = img.naturalHeight;
  if (w * h > state.limits.max_pixels) {
    URL.revokeObjectURL(url);
    return setMessage(`${file.name} is ${w} x ${h} = ${(w * h).toLocaleString()} pixels; this server ` +
      `accepts up to ${state.limits.max_pixels.toLocaleString()} (start it with a larger --max-pixels).`);
  }
  for (const entry of state.history) if (entry.image.url !== url) URL.revokeObjectURL(entry.image.url);
  state.name = file.name || "picture";
  state.width = w; state.height = h;
  state.originalUrl = url;
  const image = { blob: file, url };
  state.history = [{ image, strokes: [] }];
  state.index = 0;
  state.fills = 0;
  state.downloaded = false;
  state.comparing = false;
  el.mask.width = w; el.mask.height = h;
  el.picture.src = url;
  el.original.src = url;
  el.hint.hidden = true;
  el.stage.hidden = false;
  setMessage("");
  fitZoom();
  redrawMask();
  updateUi();
}

// ---- painting -----------------------------------------------------------------------------

function drawStroke(stroke, from = 0) {
  if (stroke.layer) {  // a loaded mask: a bitmap already in the paint colour, alpha = how much to fill
    ctx.drawImage(stroke.layer, 0, 0);
    return;
  }
  const pts = stroke.points;
  ctx.save();
  ctx.globalCompositeOperation = stroke.erase ? "destination-out" : "source-over";
  ctx.strokeStyle = ctx.fillStyle = PAINT;
  ctx.lineWidth = stroke.width;
  ctx.lineCap = ctx.lineJoin = "round";
  if (pts.length === 1) {  // a click paints a dot
    ctx.beginPath();
    ctx.arc(pts[0][0], pts[0][1], stroke.width / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.beginPath();
    const start = Math.max(0, from - 1);
    ctx.moveTo(pts[start][0], pts[start][1]);
    for (let i = start + 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }
  ctx.restore();
}

function redrawMask() {
  ctx.clearRect(0, 0, el.mask.width, el.mask.height);
  if (state.index >= 0) for (const s of current().strokes) drawStroke(s);
}

function toImage(event) {
  const r = el.mask.getBoundingClientRect();
  return [(event.clientX - r.left) * (el.mask.width / r.width),
          (event.clientY - r.top) * (el.mask.height / r.height)];
}

function push(entry) {
  // A new action drops the redo branch; free the pictures only it used.
  const dropped = state.history.splice(state.index + 1);
  const kept = new Set(state.history.map((e) => e.image.url));
  for (const e of dropped) if (!kept.has(e.image.url) && e.image.url !== state.originalUrl) {
    URL.revokeObjectURL(e.image.url);
    kept.add(e.image.url);
  }
  state.history.push(entry);
  state.index = state.history.length - 1;
}

el.mask.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || state.busy || state.index < 0) return;
  if (state.comparing) { state.comparing = false; updateUi(); }
  el.mask.setPointerCapture(event.pointerId);
  state.drawing = { points: [toImage(event)], width: state.size / state.zoom, erase: state.tool === "eraser" };
  drawStroke(state.drawing);
  event.preventDefault();
});

el.mask.addEventListener("pointermove", (event) => {
  if (!state.drawing) return;
  // Coalesced events keep fast strokes smooth where the browser batches pointer moves.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  const n = state.drawing.points.length;
  for (const e of (events.length ? events : [event])) state.drawing.points.push(toImage(e));
  drawStroke(state.drawing, n);
});

function endStroke() {
  if (!state.drawing) return;
  const stroke = state.drawing;
  state.drawing = null;
  const entry = current();
  push({ image: entry.image, strokes: [...entry.strokes, stroke] });
  // Replay from the history, so the mask is exactly what undo/redo would draw (segments drawn
  // one by one while dragging antialias a little differently from one path).
  redrawMask();
  updateUi();
}
el.mask.addEventListener("pointerup", endStroke);
el.mask.addEventListener("pointercancel", endStroke);

// The brush outline follows the pointer at its real size on screen.
el.viewport.addEventListener("pointermove", (event) => {
  const over = state.index >= 0 && event.target === el.mask && !state.spaceHeld;
  el.cursor.hidden = !over;
  if (!over) return;
  el.cursor.style.left = `${event.clientX}px`;
  el.cursor.style.top = `${event.clientY}px`;
  el.cursor.style.width = el.cursor.style.height = `${state.size}px`;
});
el.viewport.addEventListener("pointerleave", () => { el.cursor.hidden = true; });

function setTool(tool) { state.tool = tool; updateUi(); }
function setSize(size) {
  state.size = Math.max(+el.size.min, Math.min(+el.size.max, Math.round(size)));
  el.size.value = String(state.size);
  el.cursor.style.width = el.cursor.style.height = `${state.size}px`;
  updateUi();
}

async function showEntry() {
  const entry = current();
  if (el.picture.getAttribute("src") !== entry.image.url) {
    el.picture.src = entry.image.url;
    await el.picture.decode().catch(() => {});
  }
  redrawMask();
  updateUi();
}

function undo() { if (state.index > 0 && !state.busy) { state.index -= 1; showEntry(); } }
function redo() { if (state.index < state.history.length - 1 && !state.busy) { state.index += 1; showEntry(); } }
function clearPaint() {
  if (state.index < 0 || current().strokes.length === 0) return;
  push({ image: current().image, strokes: [] });
  redrawMask();
  updateUi();
}

// ---- zoom ---------------------------------------------------------------------------------

function setZoom(zoom, anchor) {
  if (state.index < 0) return;
  const vp = el.viewport;
  // Keep the picture point under the anchor (pointer, or the viewport centre) in place.
  const ax = anchor ? anchor[0] : vp.clientWidth / 2, ay = anchor ? anchor[1] : vp.clientHeight / 2;
  const before = el.stage.getBoundingClientRect(), vpr = vp.getBoundingClientRect();
  const px = (vpr.left + ax - before.left) / state.zoom, py = (vpr.top + ay - before.top) / state.zoom;
  state.zoom = Math.max(0.02, Math.min(8, zoom));
  el.stage.style.width = `${state.width * state.zoom}px`;
  el.stage.style.height = `${state.height * state.zoom}px`;
  const after = el.stage.getBoundingClientRect();
  vp.scrollLeft += after.left + px * state.zoom - (vpr.left + ax);
  vp.scrollTop += after.top + py * state.zoom - (vpr.top + ay);
  updateUi();
}

function fitZoom() {
  const vp = el.viewport;
  const z = Math.min((vp.clientWidth - 32) / state.width, (vp.clientHeight - 32) / state.height, 1);
  setZoom(z > 0 ? z : 1);
}

el.viewport.addEventListener("wheel", (event) => {
  if (!(event.ctrlKey || event.metaKey) || state.index < 0) return;
  event.preventDefault();
  const r = el.viewport.getBoundingClientRect();
  setZoom(state.zoom * Math.exp(-event.deltaY * 0.0015), [event.clientX - r.left, event.clientY - r.top]);
}, { passive: false });

// ---- fill ---------------------------------------------------------------------------------

function hasPaint() {
  if (current().strokes.length === 0) return false;
  const data = ctx.getImageData(0, 0, el.mask.width, el.mask.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i]) return true;
  return false;
}

function whiteMask() {
  // White where painted, transparent elsewhere; the server reads grey x alpha, so a soft brush
  // edge becomes a partial hole that blends with the picture.
  const out = document.createElement("canvas");
  out.width = el.mask.width; out.height = el.mask.height;
  const c = out.getContext("2d");
  c.drawImage(el.mask, 0, 0);
  c.globalCompositeOperation = "source-in";
  c.fillStyle = "#fff";
  c.fillRect(0, 0, out.width, out.height);
  return out;
}

function toBlob(canvas, type, quality) {
  return new Promise((resolve, reject) => canvas.toBlob(
    (blob) => (blob ? resolve(blob) : reject(new Error(`this browser cannot encode ${type}`))), type, quality));
}

const maskBlob = () => toBlob(whiteMask(), "image/png");

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch { /* not JSON: fall through */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

async function runFill() {
  if (state.index < 0 || state.busy) return;
  if (!hasPaint()) return setMessage("Paint over what should go first, then press Fill.", "note");
  state.busy = true;
  state.comparing = false;
  setMessage("");
  updateUi();
  const started = performance.now();
  try {
    const entry = current();
    const form = new FormData();
    form.append("image", entry.image.blob, entry.image.blob.name || "picture.png");
    form.append("mask", await maskBlob(), "mask.png");
    form.append("blend", el.soft.checked ? "soft" : "hard");  // hard: anti-aliased brush edges leave no ghost
    // The paint is the user's own: a brush over most of the picture is meant (the server refuses
    // such a mask from other clients, where it is usually an inverted or swapped file).
    form.append("force", "true");
    if (el.model.value) form.append("model", el.model.value);
    let response;
    state.abort = new AbortController();
    const megapixels = (state.width * state.height) / 1e6;
    const ticker = setInterval(() => showProgress(started, megapixels), 250);
    showProgress(started, megapixels);
    try {
      response = await fetch("/api/inpaint", { method: "POST", body: form, signal: state.abort.signal });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new Error("the server did not answer (is `fillgap serve` still running?)");
    } finally {
      clearInterval(ticker);
    }
    if (!response.ok) throw new Error(await errorText(response));
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    push({ image: { blob, url }, strokes: [], fill: true });
    state.fills += 1;
    state.downloaded = false;
    el.picture.src = url;
    await el.picture.decode().catch(() => {});
    redrawMask();
    const seconds = (performance.now() - started) / 1000;
    state.secondsPerMegapixel = seconds / Math.max(megapixels, 0.01);  // for the next fill's estimate
    setMessage(`Filled in ${seconds.toFixed(1)} s. Keep brushing, or download the result.`, "note");
  } catch (err) {
    if (err.name === "AbortError") setMessage("Fill cancelled; the picture is as it was.", "note");
    else setMessage(`Fill failed: ${err.message}`);
  } finally {
    state.busy = false;
    state.abort = null;
    el.busy.textContent = "Filling\u2026";
    updateUi();
  }
}

// Seconds so far and, once a fill on this page has given a pace, about how many are left.
function showProgress(started, megapixels) {
  const spent = (performance.now() - started) / 1000;
  let text = `Filling\u2026 ${spent.toFixed(0)} s`;
  if (state.secondsPerMegapixel) {
    const left = state.secondsPerMegapixel * megapixels - spent;
    text += left > 1 ? ` (about ${left.toFixed(0)} s left)` : " (nearly done)";
  }
  el.busy.textContent = text;
}

function cancelFill() {
  if (state.abort) state.abort.abort();  // the server notices the hang-up and stops the fill
}

function saveFile(url, name) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

const baseName = () => state.name.replace(/\.[^.]+$/, "") || "picture";

async function download() {
  if (el.download.disabled) return;
  const image = current().image;
  if (el.format.value !== "jpeg") {
    // The server's PNG as it came: every pixel, the alpha and the colour profile kept.
    saveFile(image.url, `${baseName()}-filled.png`);
  } else {
    const out = document.createElement("canvas");
    out.width = state.width; out.height = state.height;
    const c = out.getContext("2d");
    c.fillStyle = "#fff";  // JPEG has no transparency: see-through parts become white, not black
    c.fillRect(0, 0, out.width, out.height);
    try {
      c.drawImage(await loadImage(image.url), 0, 0, out.width, out.height);
      const url = URL.createObjectURL(await toBlob(out, "image/jpeg", 0.92));
      saveFile(url, `${baseName()}-filled.jpg`);
      // Freed once the browser has taken the file (revoking at once can cancel the download).
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      return setMessage(`Download failed: ${err.message}`);
    }
  }
  state.downloaded = true;
}

// ---- mask files ---------------------------------------------------------------------------

async function openMask(file) {
  if (!file) return;
  if (state.index < 0) return setMessage("Open a picture first, then load its mask.");
  if (state.busy) return setMessage("Wait for the fill to finish before loading a mask.");
  const url = URL.createObjectURL(file);
  let img;
  try {
    img = await loadImage(url);
  } catch {
    return setMessage(`This browser cannot read ${file.name} as a mask: use a PNG, JPEG or WebP picture.`);
  } finally {
    URL.revokeObjectURL(url);
  }
  const layer = document.createElement("canvas");
  layer.width = state.width; layer.height = state.height;
  const c = layer.getContext("2d", { willReadFrequently: true });
  c.drawImage(img, 0, 0, layer.width, layer.height);  // a mask of another size is scaled to the picture
  const pixels = c.getImageData(0, 0, layer.width, layer.height);
  const d = pixels.data;
  let filled = 0;
  for (let i = 0; i < d.length; i += 4) {
    // Read as the server reads a mask: grey x alpha is how much of the pixel is filled.
    const amount = Math.round((d[i] + d[i + 1] + d[i + 2]) / 3 * d[i + 3] / 255);
    d[i] = 255; d[i + 1] = 60; d[i + 2] = 170; d[i + 3] = amount;  // PAINT
    if (amount) filled += 1;
  }
  c.putImageData(pixels, 0, 0);
  // It replaces the paint; Undo brings the paint back.
  push({ image: current().image, strokes: [{ layer }] });
  redrawMask();
  updateUi();
  const note = img.naturalWidth === state.width && img.naturalHeight === state.height ? "" :
    ` (scaled from ${img.naturalWidth} x ${img.naturalHeight})`;
  setMessage(filled ? `Mask loaded${note}: press Fill, or keep brushing.` :
    `${file.name} has no white: nothing to fill.`, "note");
}

async function saveMask() {
  if (el.maskSave.disabled) return;
  // Opaque black and white, as other tools expect: white (or grey, partly) = fill.
  const out = document.createElement("canvas");
  out.width = state.width; out.height = state.height;
  const c = out.getContext("2d");
  c.fillStyle = "#000";
  c.fillRect(0, 0, out.width, out.height);
  c.drawImage(whiteMask(), 0, 0);
  const url = URL.createObjectURL(await toBlob(out, "image/png"));
  saveFile(url, `${baseName()}-mask.png`);
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function toggleCompare() {
  if (el.compare.disabled) return;
  state.comparing = !state.comparing;
  updateUi();
}

// ---- before/after divider -----------------------------------------------------------------

function setSplit(fraction) {
  state.split = Math.max(0, Math.min(1, fraction));
  updateUi();
}

const splitAt = (event) => {
  const r = el.stage.getBoundingClientRect();
  setSplit((event.clientX - r.left) / r.width);
};

// While comparing, pressing anywhere on the picture moves the divider there, and dragging moves it.
el.stage.addEventListener("pointerdown", (event) => {
  if (!state.comparing || event.button !== 0) return;
  el.stage.setPointerCapture(event.pointerId);
  state.splitting = true;
  splitAt(event);
  event.preventDefault();
});
el.stage.addEventListener("pointermove", (event) => { if (state.splitting) splitAt(event); });
el.stage.addEventListener("pointerup", () => { state.splitting = false; });
el.stage.addEventListener("pointercancel", () => { state.splitting = false; });

// ---- pan: hold Space and drag -------------------------------------------------------------

// Capture phase, so a pan never reaches the brush or the divider below it.
el.viewport.addEventListener("pointerdown", (event) => {
  if (!state.spaceHeld || event.button !== 0 || state.index < 0) return;
  event.stopPropagation();
  event.preventDefault();
  el.viewport.setPointerCapture(event.pointerId);
  state.pan = { x: event.clientX, y: event.clientY, left: el.viewport.scrollLeft, top: el.viewport.scrollTop };
  document.body.classList.add("pan-dragging");
}, true);
el.viewport.addEventListener("pointermove", (event) => {
  if (!state.pan) return;
  el.viewport.scrollLeft = state.pan.left - (event.clientX - state.pan.x);
  el.viewport.scrollTop = state.pan.top - (event.clientY - state.pan.y);
});
function endPan() {
  state.pan = null;
  document.body.classList.remove("pan-dragging");
}
el.viewport.addEventListener("pointerup", endPan);
el.viewport.addEventListener("pointercancel", endPan);

function setSpace(held) {
  if (state.spaceHeld === held) return;
  state.spaceHeld = held;
  if (held) el.cursor.hidden = true;
  updateUi();
}
// A Space released in another window never reaches this one.
window.addEventListener("blur", () => setSpace(false));

function mb(n) { return `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MB`; }

// ---- wiring -------------------------------------------------------------------------------

el.file.addEventListener("change", () => { openFile(el.file.files[0]); el.file.value = ""; });
el.brush.addEventListener("click", () => setTool("brush"));
el.eraser.addEventListener("click", () => setTool("eraser"));
el.size.addEventListener("input", () => setSize(+el.size.value));
el.undo.addEventListener("click", undo);
el.redo.addEventListener("click", redo);
el.clear.addEventListener("click", clearPaint);
el.zoomIn.addEventListener("click", () => setZoom(state.zoom * 1.25));
el.zoomOut.addEventListener("click", () => setZoom(state.zoom / 1.25));
el.zoomFit.addEventListener("click", fitZoom);
el.run.addEventListener("click", runFill);
el.cancel.addEventListener("click", cancelFill);
el.compare.addEventListener("click", toggleCompare);
el.download.addEventListener("click", download);
el.maskFile.addEventListener("change", () => { openMask(el.maskFile.files[0]); el.maskFile.value = ""; });
el.maskSave.addEventListener("click", saveMask);
el.message.addEventListener("click", () => setMessage(""));

// Ctrl+V of an image (a screenshot, or an image copied in another program) opens it as the picture.
document.addEventListener("paste", (event) => {
  const data = event.clipboardData;
  if (!data) return;
  let file = [...data.files].find((f) => f.type.startsWith("image/"));
  if (!file) {
    const item = [...data.items].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    file = item && item.getAsFile();
  }
  if (!file) return;
  event.preventDefault();
  openFile(file);
});

document.addEventListener("dragover", (event) => {
  event.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) document.body.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  event.preventDefault();
  document.body.classList.remove("dragging");
  openFile(event.dataTransfer.files[0]);
});

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
  if (event.target instanceof HTMLSelectElement) return;
  const mod = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  let handled = true;
  // With a picture open, Space pans; its default (scrolling, or pressing the focused button) is
  // kept off. Without one, Space still presses buttons.
  if (key === " ") {
    if (state.index >= 0 && !mod) setSpace(true);
    else handled = false;
  } else if (key === "enter") runFill();
  else if (key === "escape" && state.busy) cancelFill();
  else if (mod && key === "z" && event.shiftKey) redo();
  else if (mod && key === "z") undo();
  else if (mod && key === "y") redo();
  else if (mod && key === "s") download();
  else if (mod) handled = false;
  else if (key === "b") setTool("brush");
  else if (key === "e") setTool("eraser");
  else if (key === "c") toggleCompare();
  else if (key === "[") setSize(state.size / 1.2);
  else if (key === "]") setSize(state.size * 1.2);
  else if (key === "+" || key === "=") setZoom(state.zoom * 1.25);
  else if (key === "-") setZoom(state.zoom / 1.25);
  else if (key === "0") fitZoom();
  else if (state.comparing && key === "arrowleft") setSplit(state.split - 0.05);
  else if (state.comparing && key === "arrowright") setSplit(state.split + 0.05);
  else handled = false;
  if (handled) event.preventDefault();
});
document.addEventListener("keyup", (event) => {
  if (event.key !== " " || !state.spaceHeld) return;
  setSpace(false);
  event.preventDefault();
});

// Closing the tab after a fill that was never downloaded asks first.
window.addEventListener("beforeunload", (event) => {
  if (state.fills > 0 && !state.downloaded) event.preventDefault();
});

updateUi();

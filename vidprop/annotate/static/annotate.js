// vidprop annotate: the labelling page.  Everything it needs is served by vidprop; it requests nothing elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const view = $("view"), ctx = view.getContext("2d");
const S = { info: null, t: 0, frame: null, mask: null, overlay: null, clicks: [], drag: null, painting: null,
            palette: [], busy: false };

function message(text, isError) {
  const m = $("message");
  m.textContent = text || "";
  m.className = isError ? "error" : "";
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) };
  const r = await fetch(path, opts);
  const data = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function colour(id) { const p = S.palette; return [p[3 * id], p[3 * id + 1], p[3 * id + 2]]; }
function objId() { return Math.max(1, Math.min(255, parseInt($("obj").value, 10) || 1)); }
function tool() { return document.querySelector("input[name=tool]:checked").value; }

function loadImage(src) {
  return new Promise((ok, bad) => { const im = new Image(); im.onload = () => ok(im); im.onerror = bad; im.src = src; });
}

// ------------------------------------------------------------------ drawing
async function loadFrame(t) {
  const stamp = Date.now();
  const [fr, mk] = await Promise.all([loadImage(`/api/frame/${t}`), loadImage(`/api/mask/${t}?v=${stamp}`)]);
  if (t !== S.t) return;
  S.frame = fr;
  const W = S.info.width, H = S.info.height;
  const c = document.createElement("canvas"); c.width = W; c.height = H;
  const cx = c.getContext("2d"); cx.drawImage(mk, 0, 0);
  S.mask = cx.getImageData(0, 0, W, H);  // palette colours: the ids, as the PNG holds them
  const ov = cx.createImageData(W, H);
  for (let i = 0; i < S.mask.data.length; i += 4) {
    const d = S.mask.data, bg = d[i] === 0 && d[i + 1] === 0 && d[i + 2] === 0;
    ov.data[i] = d[i]; ov.data[i + 1] = d[i + 1]; ov.data[i + 2] = d[i + 2]; ov.data[i + 3] = bg ? 0 : 140;
  }
  cx.putImageData(ov, 0, 0);
  S.overlay = c;
  draw();
}

function draw() {
  if (!S.frame) return;
  ctx.drawImage(S.frame, 0, 0);
  if (S.overlay) ctx.drawImage(S.overlay, 0, 0);
  if (S.painting) { ctx.globalAlpha = 0.6; ctx.drawImage(S.painting.canvas, 0, 0); ctx.globalAlpha = 1; }
  for (const [x, y, l] of S.clicks) {
    ctx.beginPath(); ctx.arc(x, y, Math.max(3, S.info.width / 150), 0, 2 * Math.PI);
    ctx.fillStyle = l ? "#00e676" : "#ff1744"; ctx.fill(); ctx.strokeStyle = "#fff"; ctx.stroke();
  }
  if (S.drag && S.drag.box) {
    const [x0, y0, x1, y1] = S.drag.box;
    ctx.strokeStyle = "#ffeb3b"; ctx.lineWidth = 2; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0); ctx.lineWidth = 1;
  }
}

function drawTimeline() {
  const tl = $("timeline"), n = S.info.frames;
  tl.width = tl.clientWidth || 800;
  const c = tl.getContext("2d"), w = tl.width / n;
  c.fillStyle = "#333"; c.fillRect(0, 0, tl.width, tl.height);
  const conf = S.info.confidence, wrong = new Set(S.info.likely_wrong), ann = new Set(S.info.annotated);
  for (let t = 0; t < n; t++) {
    const s = conf[String(t)];
    if (s !== undefined) {
      c.fillStyle = `hsl(${Math.round(120 * s)}, 70%, 45%)`;
      c.fillRect(t * w, 8, Math.max(1, w - 1), tl.height - 8);
    }
    if (wrong.has(t)) { c.fillStyle = "#ff1744"; c.fillRect(t * w, 0, Math.max(2, w - 1), 6); }
    if (ann.has(t)) { c.fillStyle = "#40c4ff"; c.fillRect(t * w, 0, Math.max(2, w / 2), 6); }
  }
  c.strokeStyle = "#fff"; c.strokeRect(S.t * w, 0, Math.max(2, w), tl.height);
}

function renderInfo(info) {
  S.info = info;
  $("undo").disabled = !info.can_undo;
  $("redo").disabled = !info.can_redo;
  const box = $("objects"); box.innerHTML = "";
  for (const id of info.objects) {
    const chip = document.createElement("span");
    chip.className = "objchip"; chip.textContent = id; chip.dataset.id = id;
    chip.style.background = `rgb(${colour(id).join(",")})`;
    chip.onclick = () => { $("obj").value = id; objectChanged(); };
    box.appendChild(chip);
  }
  drawTimeline();
}

function objectChanged() {
  $("swatch").style.background = `rgb(${colour(objId()).join(",")})`;
  S.clicks = []; draw();
}

async function go(t) {
  t = Math.max(0, Math.min(S.info.frames - 1, t));
  if (t !== S.t) S.clicks = [];
  S.t = t; $("slider").value = t;
  const name = S.info.frame_names[t], s = S.info.confidence[String(t)];
  $("label").textContent = `frame ${t} (${name})` + (s !== undefined ? `, confidence ${s.toFixed(2)}` : "");
  drawTimeline();
  await loadFrame(t);
}

async function refresh() {
  const info = await api("/api/session");
  info.palette = S.palette; renderInfo(info);
  await go(S.t);
}

async function change(path, body) {
  try {
    const info = await api(path, body);
    renderInfo(info); message("");
    await loadFrame(S.t);
  } catch (e) { message(e.message, true); }
}

// ------------------------------------------------------------------ the canvas: clicks, box, brush
function pixel(e) {
  const r = view.getBoundingClientRect();
  return [Math.min(S.info.width - 1, Math.max(0, (e.clientX - r.left) * S.info.width / r.width)),
          Math.min(S.info.height - 1, Math.max(0, (e.clientY - r.top) * S.info.height / r.height))];
}

function objectCanvas(id) {
  const W = S.info.width, H = S.info.height, [r, g, b] = colour(id);
  const c = document.createElement("canvas"); c.width = W; c.height = H;
  const cx = c.getContext("2d"), im = cx.createImageData(W, H), d = S.mask.data;
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] === r && d[i + 1] === g && d[i + 2] === b) { im.data[i] = r; im.data[i + 1] = g; im.data[i + 2] = b; im.data[i + 3] = 255; }
  }
  cx.putImageData(im, 0, 0);
  return { canvas: c, cx };
}

function paintAt(x, y) {
  const p = S.painting, size = parseInt($("brush-size").value, 10) || 8;
  p.cx.globalCompositeOperation = p.erase ? "destination-out" : "source-over";
  p.cx.fillStyle = `rgb(${colour(objId()).join(",")})`;
  p.cx.beginPath(); p.cx.arc(x, y, size, 0, 2 * Math.PI); p.cx.fill();
  draw();
}

view.addEventListener("contextmenu", (e) => e.preventDefault());
view.addEventListener("mousedown", (e) => {
  if (!S.info || S.busy) return;
  const [x, y] = pixel(e), t = tool();
  if (t === "box") S.drag = { x0: x, y0: y, box: null };
  else if (t === "brush" || t === "eraser") {
    S.painting = { ...objectCanvas(objId()), erase: t === "eraser" };
    paintAt(x, y);
  } else if (t === "click") {
    S.clicks.push([Math.round(x), Math.round(y), e.button === 2 || e.shiftKey ? 0 : 1]);
    draw();
    sendPrompt(null);
  }
});
view.addEventListener("mousemove", (e) => {
  const [x, y] = pixel(e);
  if (S.drag) { S.drag.box = [Math.min(S.drag.x0, x), Math.min(S.drag.y0, y), Math.max(S.drag.x0, x), Math.max(S.drag.y0, y)]; draw(); }
  if (S.painting && e.buttons) paintAt(x, y);
});
window.addEventListener("mouseup", async () => {
  if (S.drag) {
    const box = S.drag.box; S.drag = null;
    if (box && box[2] - box[0] >= 2 && box[3] - box[1] >= 2) await sendPrompt(box.map(Math.round));
    else draw();
  }
  if (S.painting) {
    const png = S.painting.canvas.toDataURL("image/png"); S.painting = null;
    await change("/api/mask", { frame: S.t, obj_id: objId(), png });
  }
});

async function sendPrompt(box) {
  const pts = S.clicks.map(([x, y]) => [x, y]), labels = S.clicks.map((c) => c[2]);
  message("making the mask ...");
  await change("/api/points", { frame: S.t, obj_id: objId(), points: pts, labels, box });
}

// ------------------------------------------------------------------ propagation (server-sent events over a POST)
async function propagate(direction) {
  if (S.busy) return;
  S.busy = true; message(`propagating ${direction} from frame ${S.t} ...`);
  $("progress").style.width = "0";
  try {
    const r = await fetch("/api/propagate", { method: "POST", headers: { "Content-Type": "application/json" },
                                              body: JSON.stringify({ frame: S.t, direction }) });
    if (!r.ok) { const d = await r.json().catch(() => ({})); throw new Error(d.error || `HTTP ${r.status}`); }
    const reader = r.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const chunk = buf.slice(0, k); buf = buf.slice(k + 2);
        const data = JSON.parse(chunk.split("\n").find((l) => l.startsWith("data: ")).slice(6));
        onEvent(data);
      }
    }
  } catch (e) { message(e.message, true); }
  S.busy = false;
  await refresh();
}

function onEvent(ev) {
  if (ev.error) { message(ev.error, true); return; }
  if (ev.event === "extracting") message("computing the video's features (once; later propagations read them) ...");
  if (ev.event === "frame") {
    $("progress").style.width = `${(100 * ev.done / ev.total).toFixed(1)}%`;
    S.info.confidence[String(ev.frame)] = ev.score;
    message(`propagating ... frame ${ev.frame} (${ev.done}/${ev.total})`);
    if (ev.frame === S.t) loadFrame(S.t);
    drawTimeline();
  }
  if (ev.event === "done") {
    $("progress").style.width = "100%";
    message(`propagated ${ev.frames} frame(s); saved` + (ev.likely_wrong.length ? `; check frames ${ev.likely_wrong.join(", ")}` : ""));
  }
}

// ------------------------------------------------------------------ controls
$("fwd").onclick = () => propagate("forward");
$("bwd").onclick = () => propagate("backward");
$("both").onclick = () => propagate("both");
$("undo").onclick = () => change("/api/undo", {});
$("redo").onclick = () => change("/api/redo", {});
$("remove").onclick = () => change("/api/remove", { obj_id: objId() });
$("export").onclick = async () => {
  const formats = [...document.querySelectorAll(".fmt:checked")].map((c) => c.value).join(",") || "png";
  try {
    const r = await api("/api/export", { formats });
    message(`exported to ${r.out}: ${r.files.length} file(s)`);
  } catch (e) { message(e.message, true); }
};
$("obj").addEventListener("change", objectChanged);
$("slider").addEventListener("input", (e) => go(parseInt(e.target.value, 10)));
$("timeline").addEventListener("click", (e) => {
  const r = e.target.getBoundingClientRect();
  go(Math.floor((e.clientX - r.left) / r.width * S.info.frames));
});
window.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type === "number") return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); change(e.shiftKey ? "/api/redo" : "/api/undo", {}); }
  else if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "y") { e.preventDefault(); change("/api/redo", {}); }
  else if (e.key === "ArrowRight") go(S.t + (e.shiftKey ? 10 : 1));
  else if (e.key === "ArrowLeft") go(S.t - (e.shiftKey ? 10 : 1));
  else if (e.key === "Home") go(0);
  else if (e.key === "End") go(S.info.frames - 1);
  else if (e.key === "n") {
    const w = S.info.likely_wrong.slice().sort((a, b) => a - b);
    if (w.length) go(w.find((t) => t > S.t) ?? w[0]);
  }
});

(async function start() {
  try {
    const info = await api("/api/session");
    S.palette = info.palette;
    $("name").textContent = info.name;
    view.width = info.width; view.height = info.height;
    $("slider").max = info.frames - 1;
    renderInfo(info);
    objectChanged();
    if (!info.can_prompt) document.querySelector("input[value=click]").parentElement.title = "no click-to-mask model";
    await go(0);
    message(info.resumed ? `resumed the session in ${info.out}` : "click on an object to start");
  } catch (e) { message(e.message, true); }
})();

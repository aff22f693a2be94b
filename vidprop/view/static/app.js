// vidprop view: the page.  Plain JavaScript, no build step, no request outside this server.
//
// Routes (location.hash):  #/ the list of results,  #/v/NAME?f=I one result at frame I.
// In match mode (vidprop view --match) the page is the click-to-match view.
// After each drawing, canvases carry data-* attributes (frame, hidden ids, match) that the
// browser tests wait for.
"use strict";

(() => {
  const main = document.getElementById("main");
  const crumb = document.getElementById("crumb");
  const statusEl = document.getElementById("status");
  let current = null; // the active view: {destroy()}
  let info = null;

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k === "style") e.style.cssText = v; // through the CSSOM: the CSP refuses style attributes
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function setMain(...children) {
    main.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function setStatus(text, ok) {
    statusEl.textContent = text || "";
    statusEl.className = ok ? "ok" : "";
  }

  async function api(path) {
    const r = await fetch(path, { cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.decoding = "async";
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error(`cannot load ${url}`));
      img.src = url;
    });
  }

  const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const enc = encodeURIComponent;

  // The DAVIS palette (PASCAL VOC colour map): id -> [r, g, b]; the masks are written with it.
  const PALETTE = (() => {
    const p = new Uint8Array(256 * 3);
    for (let i = 0; i < 256; i++) {
      let c = i, r = 0, g = 0, b = 0;
      for (let j = 0; j < 8; j++) {
        r |= ((c >> 0) & 1) << (7 - j);
        g |= ((c >> 1) & 1) << (7 - j);
        b |= ((c >> 2) & 1) << (7 - j);
        c >>= 3;
      }
      p[3 * i] = r; p[3 * i + 1] = g; p[3 * i + 2] = b;
    }
    return p;
  })();
  const COLOUR_TO_ID = (() => {
    const m = new Map();
    for (let i = 0; i < 256; i++) m.set((PALETTE[3 * i] << 16) | (PALETTE[3 * i + 1] << 8) | PALETTE[3 * i + 2], i);
    return m;
  })();
  const cssColour = (id) => `rgb(${PALETTE[3 * id]},${PALETTE[3 * id + 1]},${PALETTE[3 * id + 2]})`;

  // Joint colours as vidprop.io.keypoints.joint_colours: an HSV wheel at full saturation.
  const jointColour = (j, n) => `hsl(${Math.floor((j * 180) / Math.max(n, 1)) * 2}, 100%, 50%)`;

  function scratch(w, h) {
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    return c.getContext("2d", { willReadFrequently: true });
  }

  // A mask image (indexed PNG drawn by the browser as RGB) -> ids per pixel.
  function maskIds(img, w, h) {
    const ctx = scratch(w, h);
    ctx.imageSmoothingEnabled = false; // ids must not be blended if a mask is ever resized
    ctx.drawImage(img, 0, 0, w, h);
    const px = ctx.getImageData(0, 0, w, h).data;
    const ids = new Uint8Array(w * h);
    let last = -1, lastId = 0;
    for (let p = 0, q = 0; p < ids.length; p++, q += 4) {
      const key = (px[q] << 16) | (px[q + 1] << 8) | px[q + 2];
      if (key !== last) { last = key; lastId = COLOUR_TO_ID.get(key) || 0; }
      ids[p] = lastId;
    }
    return ids;
  }

  function drawFrame(ctx, img, w, h) {
    ctx.fillStyle = "#20242c";
    ctx.fillRect(0, 0, w, h);
    if (!img) return;
    // overlay.mp4 pads odd sizes by a pixel: draw those unscaled; anything else is fitted.
    if (Math.abs(img.naturalWidth - w) <= 2 && Math.abs(img.naturalHeight - h) <= 2) ctx.drawImage(img, 0, 0);
    else ctx.drawImage(img, 0, 0, w, h);
  }

  // Blend the visible objects over the frame; object borders solid (as the overlay video).
  function composeOverlay(base, ids, w, h, alpha, hidden) {
    const out = new ImageData(new Uint8ClampedArray(base.data), w, h);
    const d = out.data;
    const vis = new Uint8Array(ids.length);
    for (let p = 0; p < ids.length; p++) vis[p] = hidden[ids[p]] ? 0 : ids[p];
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const p = y * w + x;
        const id = vis[p];
        if (!id) continue;
        let edge = false;
        for (let dy = -1; dy <= 1 && !edge; dy++) {
          const yy = y + dy;
          if (yy < 0 || yy >= h) continue;
          for (let dx = -1; dx <= 1; dx++) {
            const xx = x + dx;
            if (xx < 0 || xx >= w) continue;
            if (vis[yy * w + xx] !== id) { edge = true; break; }
          }
        }
        const q = 4 * p, c = 3 * id;
        if (edge) {
          d[q] = PALETTE[c]; d[q + 1] = PALETTE[c + 1]; d[q + 2] = PALETTE[c + 2];
        } else {
          d[q] = (1 - alpha) * d[q] + alpha * PALETTE[c]; // Uint8ClampedArray rounds
          d[q + 1] = (1 - alpha) * d[q + 1] + alpha * PALETTE[c + 1]; // Uint8ClampedArray rounds
          d[q + 2] = (1 - alpha) * d[q + 2] + alpha * PALETTE[c + 2]; // Uint8ClampedArray rounds
        }
      }
    }
    return out;
  }

  function viewCanvas(w, h, id) {
    return el("canvas", { class: "view", id, width: w, height: h });
  }

  // ------------------------------------------------------------------ frame player (segment and track)
  // Shared: slider, play/pause, keys, a small cache of loaded frames, prefetch while playing.
  function makePlayer(count, fps, load, render, onFrame) {
    const cache = new Map(); // index -> Promise of loaded data
    const CACHE = 12;
    let index = 0, playing = false, timer = null, token = 0;
    const slider = el("input", { type: "range", min: 0, max: Math.max(0, count - 1), value: 0, id: "slider",
      "aria-label": "frame" });
    const label = el("span", { class: "framelabel", id: "framelabel" });
    const play = el("button", { class: "primary", id: "play", title: "play / pause (space)" }, "▶ play");

    function get(i) {
      if (!cache.has(i)) {
        cache.set(i, load(i));
        while (cache.size > CACHE) cache.delete(cache.keys().next().value);
      }
      return cache.get(i);
    }
    async function show(i) {
      i = Math.max(0, Math.min(count - 1, i));
      index = i;
      slider.value = i;
      onFrame(i, label);
      const mine = ++token;
      try {
        const data = await get(i);
        if (mine !== token) return false; // a newer request won
        render(i, data);
        return true;
      } catch (err) {
        cache.delete(i);
        setStatus(err.message);
        return false;
      }
    }
    function stop() {
      playing = false;
      clearTimeout(timer);
      play.textContent = "▶ play";
    }
    async function loop() {
      if (!playing) return;
      if (index >= count - 1) { stop(); return; }
      const t0 = performance.now();
      get(index + 1);
      if (index + 2 < count) get(index + 2); // prefetch
      const ok = await show(index + 1);
      if (!playing) return;
      if (!ok) { stop(); return; }
      timer = setTimeout(loop, Math.max(0, 1000 / (fps || 10) - (performance.now() - t0)));
    }
    function toggle() {
      if (playing) { stop(); return; }
      if (index >= count - 1) show(0);
      playing = true;
      play.textContent = "❚❚ pause";
      timer = setTimeout(loop, 0);
    }
    slider.addEventListener("input", () => { stop(); show(+slider.value); });
    play.addEventListener("click", () => { toggle(); play.blur(); });
    function onKey(e) {
      if (e.target && e.target.tagName === "INPUT" && e.target.type === "range" && e.key.startsWith("Arrow")) return;
      if (e.key === " ") { e.preventDefault(); toggle(); }
      else if (e.key === "ArrowRight") { e.preventDefault(); stop(); show(index + (e.shiftKey ? 10 : 1)); }
      else if (e.key === "ArrowLeft") { e.preventDefault(); stop(); show(index - (e.shiftKey ? 10 : 1)); }
      else if (e.key === "Home") { e.preventDefault(); stop(); show(0); }
      else if (e.key === "End") { e.preventDefault(); stop(); show(count - 1); }
    }
    document.addEventListener("keydown", onKey);
    return {
      slider, label, play, show, rerender: () => get(index).then((d) => render(index, d)),
      get index() { return index; },
      destroy() { stop(); document.removeEventListener("keydown", onKey); cache.clear(); },
    };
  }

  function keysHint() {
    return el("span", { class: "kbd" }, el("kbd", {}, "space"), " play  ", el("kbd", {}, "←"), el("kbd", {}, "→"),
      " frame  ", el("kbd", {}, "shift"), "+", el("kbd", {}, "←"), el("kbd", {}, "→"), " ±10");
  }

  function setHash(name, i) {
    const h = `#/v/${enc(name)}?f=${i}`;
    if (location.hash !== h) history.replaceState(null, "", h);
  }

  function setCrumb(list) {
    crumb.replaceChildren(...list.flatMap((x, k) => (k ? [" / ", x] : [x])));
  }

  // ------------------------------------------------------------------ segment view
  async function showSegment(d, start) {
    const W = d.width, H = d.height, n = d.frames.length;
    const base = `api/results/${enc(d.name)}`;
    const hidden = new Uint8Array(256);
    const known = new Set(d.ids);
    let alpha = 0.5;
    const orig = viewCanvas(W, H, "orig");
    const over = viewCanvas(W, H, "over");
    const octx = orig.getContext("2d", { willReadFrequently: true });
    const vctx = over.getContext("2d");
    const objects = el("div", { class: "objects", id: "objects" }, el("span", { class: "label" }, "objects"));
    const download = el("a", { class: "button", id: "download", title: "the mask PNG of this frame, as written (usable as a first-frame mask)" }, "⬇ mask PNG");
    const opacity = el("input", { type: "range", min: 0, max: 100, value: 50, id: "opacity", "aria-label": "overlay opacity" });
    let last = null; // {i, frameData, ids}

    function addChip(id) {
      const box = el("input", { type: "checkbox", checked: true, "data-id": id, "aria-label": `object ${id}` });
      const chip = el("label", { class: "chip", dataset: { id: String(id) } }, box,
        el("span", { class: "swatch", style: `background:${cssColour(id)}` }), `id ${id}`);
      box.addEventListener("change", () => {
        hidden[id] = box.checked ? 0 : 1;
        chip.classList.toggle("off", !box.checked);
        box.blur();
        if (last) paint();
      });
      objects.append(chip);
    }
    [...known].sort((a, b) => a - b).forEach(addChip);

    async function load(i) {
      const maskP = loadImage(`${base}/mask/${i}`);
      const frameP = d.source !== "none" ? loadImage(`${base}/frame/${i}`).catch((e) => { setStatus(e.message); return null; })
        : Promise.resolve(null);
      const [mask, frame] = await Promise.all([maskP, frameP]);
      const ids = maskIds(mask, W, H);
      return { frame, ids };
    }
    function paint() {
      const out = composeOverlay(last.frameData, last.ids, W, H, alpha, hidden);
      vctx.putImageData(out, 0, 0);
      over.dataset.frame = String(last.i);
      over.dataset.hidden = [...known].filter((id) => hidden[id]).sort((a, b) => a - b).join(",");
      over.dataset.alpha = String(alpha);
    }
    function render(i, data) {
      drawFrame(octx, data.frame, W, H);
      orig.dataset.frame = String(i);
      const frameData = octx.getImageData(0, 0, W, H);
      for (let p = 0; p < data.ids.length; p++) {
        const id = data.ids[p];
        if (id && !known.has(id)) { known.add(id); addChip(id); }
      }
      last = { i, frameData, ids: data.ids };
      paint();
    }
    function onFrame(i, label) {
      label.textContent = `${i + 1} / ${n} · ${d.frames[i]}`;
      download.href = `${base}/mask/${i}?download=1`;
      download.setAttribute("download", `${d.frames[i]}.png`);
      setHash(d.name, i);
    }
    const player = makePlayer(n, d.fps, load, render, onFrame);
    opacity.addEventListener("input", () => { alpha = +opacity.value / 100; if (last) paint(); });

    const scores = d.scores ? el("span", { class: "muted" }, `J&F ${fmt(d.scores.jf)} (J ${fmt(d.scores.j)}, F ${fmt(d.scores.f)})`) : null;
    setMain(
      el("div", { class: "toolbar" },
        player.play,
        el("div", { class: "grow" }, player.slider, player.label),
        el("label", {}, "opacity", opacity),
        download, scores),
      objects,
      el("div", { class: "panes" },
        el("figure", {}, el("figcaption", {}, el("span", {}, d.source === "overlay" ? "overlay.mp4 (original frames unknown)" : "original"), keysHint()), orig),
        el("figure", {}, el("figcaption", {}, el("span", {}, "overlay")), over)),
      d.source !== "source" ? el("p", { class: "note", id: "source-note" }, d.source_note) : null);
    await player.show(start);
    return player;
  }

  // ------------------------------------------------------------------ track view
  async function showTrack(d, start) {
    const base = `api/results/${enc(d.name)}`;
    const kp = await api(`${base}/keypoints`);
    const joints = kp.joints, nj = joints.length, n = d.frames.length;
    const limbs = (kp.skeleton || []).map(([a, b]) => [joints.indexOf(a), joints.indexOf(b)]).filter(([a, b]) => a >= 0 && b >= 0);
    let W = d.width, H = d.height;
    const orig = viewCanvas(W || 16, H || 16, "orig");
    const over = viewCanvas(W || 16, H || 16, "over");
    const labels = el("input", { type: "checkbox", id: "labels" });
    const off = new Uint8Array(nj);
    const objects = el("div", { class: "objects", id: "objects" }, el("span", { class: "label" }, "joints"));
    joints.forEach((name, j) => {
      const box = el("input", { type: "checkbox", checked: true, "data-joint": j });
      const chip = el("label", { class: "chip" }, box, el("span", { class: "swatch", style: `background:${jointColour(j, nj)}` }), name);
      box.addEventListener("change", () => { off[j] = box.checked ? 0 : 1; chip.classList.toggle("off", !box.checked); box.blur(); player.rerender(); });
      objects.append(chip);
    });
    labels.addEventListener("change", () => { labels.blur(); player.rerender(); });

    async function load(i) {
      return d.source !== "none" ? loadImage(`${base}/frame/${i}`).catch((e) => { setStatus(e.message); return null; }) : null;
    }
    function render(i, img) {
      if (img && (!W || !H)) { W = img.naturalWidth; H = img.naturalHeight; }
      for (const c of [orig, over]) { if (c.width !== W || c.height !== H) { c.width = W; c.height = H; } }
      drawFrame(orig.getContext("2d"), img, W, H);
      const ctx = over.getContext("2d");
      drawFrame(ctx, img, W, H);
      const pts = (kp.frames[i] && kp.frames[i].keypoints) || {};
      const at = (j) => (off[j] ? null : pts[joints[j]]);
      const r = Math.max(3, Math.round(Math.min(W, H) / 80));
      ctx.lineWidth = Math.max(1, r / 2);
      ctx.strokeStyle = "#ffffff";
      for (const [a, b] of limbs) {
        const pa = at(a), pb = at(b);
        if (!pa || !pb) continue;
        ctx.beginPath(); ctx.moveTo(pa[0], pa[1]); ctx.lineTo(pb[0], pb[1]); ctx.stroke();
      }
      let shown = 0;
      ctx.font = `${Math.max(10, 3 * r)}px system-ui, sans-serif`;
      for (let j = 0; j < nj; j++) {
        const p = at(j);
        if (!p) continue;
        shown++;
        ctx.beginPath(); ctx.arc(p[0], p[1], r, 0, 2 * Math.PI);
        ctx.fillStyle = jointColour(j, nj); ctx.fill();
        ctx.lineWidth = 1; ctx.strokeStyle = "#000"; ctx.stroke();
        ctx.lineWidth = Math.max(1, r / 2); ctx.strokeStyle = "#ffffff";
        if (labels.checked) {
          ctx.fillStyle = "#fff"; ctx.strokeStyle = "#000"; ctx.lineWidth = 3;
          ctx.strokeText(joints[j], p[0] + r + 2, p[1] - r);
          ctx.fillText(joints[j], p[0] + r + 2, p[1] - r);
          ctx.lineWidth = Math.max(1, r / 2); ctx.strokeStyle = "#ffffff";
        }
      }
      orig.dataset.frame = over.dataset.frame = String(i);
      over.dataset.visible = String(shown);
    }
    function onFrame(i, label) {
      label.textContent = `${i + 1} / ${n} · ${d.frames[i]}`;
      setHash(d.name, i);
    }
    const player = makePlayer(n, d.fps, load, render, onFrame);
    setMain(
      el("div", { class: "toolbar" }, player.play, el("div", { class: "grow" }, player.slider, player.label),
        el("label", {}, labels, "joint names")),
      objects,
      el("div", { class: "panes" },
        el("figure", {}, el("figcaption", {}, el("span", {}, d.source === "overlay" ? "overlay.mp4 (original frames unknown)" : "original"), keysHint()), orig),
        el("figure", {}, el("figcaption", {}, el("span", {}, "keypoints")), over)),
      d.source !== "source" ? el("p", { class: "note", id: "source-note" }, d.source_note) : null);
    await player.show(start);
    return player;
  }

  // ------------------------------------------------------------------ one result
  async function showResult(name, start) {
    const d = await api(`api/results/${enc(name)}`);
    setCrumb([info.single ? name : el("a", { href: "#/" }, info.root), info.single ? null : name].filter(Boolean));
    document.title = `${name} · vidprop view`;
    if (!d.frames.length) throw new Error(`${name}: no frames`);
    start = Math.max(0, Math.min(d.frames.length - 1, start || 0));
    return d.kind === "track" ? showTrack(d, start) : showSegment(d, start);
  }

  // ------------------------------------------------------------------ list of results
  function showList(list) {
    setCrumb([list.root]);
    document.title = `${list.root} · vidprop view`;
    const metrics = [];
    for (const [set, row] of Object.entries(list.global || {})) {
      for (const k of ["J&F-Mean", "J-Mean", "F-Mean"]) {
        if (row[k] !== undefined) metrics.push(el("div", { class: "metric" }, el("b", {}, fmt(row[k])), el("span", {}, `${k} (${set})`)));
      }
    }
    const cols = [
      ["name", "video", false], ["kind", "kind", false], ["frames", "frames", true],
      ["jf", "J&F", true], ["j", "J", true], ["f", "F", true], ["objects", "objects", true],
    ];
    const hasScores = list.videos.some((v) => v.jf !== null && v.jf !== undefined);
    const shown = cols.filter(([k]) => hasScores || !["jf", "j", "f", "objects"].includes(k));
    let sortKey = "name", asc = true;
    const tbody = el("tbody");
    const head = el("tr", {}, shown.map(([k, label, num]) => el("th", {
      class: num ? "num" : "", dataset: { key: k },
      onclick: () => { asc = sortKey === k ? !asc : !num; sortKey = k; fill(); },
    }, label)));
    function fill() {
      const vs = [...list.videos].sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        if (x === y) return a.name.localeCompare(b.name);
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      tbody.replaceChildren(...vs.map((v) => el("tr", { dataset: { name: v.name }, onclick: () => { location.hash = `#/v/${enc(v.name)}`; } },
        shown.map(([k, , num]) => {
          if (k === "name") return el("td", {}, el("a", { href: `#/v/${enc(v.name)}` }, v.name));
          if (k === "kind") return el("td", {}, el("span", { class: "kind" }, v.kind));
          if (k === "jf") return el("td", { class: "num" }, fmt(v.jf), v.jf != null ? el("span", { class: "bar", style: `width:${Math.round(60 * v.jf)}px` }) : null);
          if (["j", "f"].includes(k)) return el("td", { class: "num" }, fmt(v[k]));
          return el("td", { class: num ? "num" : "" }, v[k] === null || v[k] === undefined ? "–" : v[k]);
        }))));
      for (const th of head.children) {
        th.classList.toggle("sorted", th.dataset.key === sortKey);
        th.classList.toggle("asc", th.dataset.key === sortKey && asc);
      }
    }
    fill();
    setMain(el("div", { class: "card" },
      el("h2", {}, list.root),
      el("p", { class: "muted" }, `${list.videos.length} result${list.videos.length === 1 ? "" : "s"}`, hasScores ? " · J&F from the score CSVs" : ""),
      metrics.length ? el("div", { class: "summary" }, metrics) : null,
      el("table", { class: "results", id: "results" }, el("thead", {}, head), tbody)));
    return { destroy() {} };
  }

  // ------------------------------------------------------------------ match view
  async function showMatch(m) {
    setCrumb([`${m.source} → ${m.target}`]);
    document.title = "match · vidprop view";
    const [src, tgt] = await Promise.all([loadImage("api/match/image/source"), loadImage("api/match/image/target")]);
    const [sw, sh] = m.source_size, [tw, th] = m.target_size;
    const sc = viewCanvas(sw, sh, "src"), tc = viewCanvas(tw, th, "tgt");
    sc.classList.add("clickable");
    const sctx = sc.getContext("2d"), tctx = tc.getContext("2d");
    const opacity = el("input", { type: "range", min: 0, max: 100, value: 60, id: "heat-opacity", "aria-label": "heatmap opacity" });
    const out = el("output", { class: "match", id: "match-result" }, "click a point on the source image");
    let answer = null, heat = null, busy = 0;

    function cross(ctx, x, y, r, colour) {
      ctx.lineWidth = 4; ctx.strokeStyle = "#000";
      ctx.beginPath(); ctx.moveTo(x - r, y); ctx.lineTo(x + r, y); ctx.moveTo(x, y - r); ctx.lineTo(x, y + r); ctx.stroke();
      ctx.lineWidth = 2; ctx.strokeStyle = colour;
      ctx.beginPath(); ctx.moveTo(x - r, y); ctx.lineTo(x + r, y); ctx.moveTo(x, y - r); ctx.lineTo(x, y + r); ctx.stroke();
      ctx.beginPath(); ctx.arc(x, y, r * 0.45, 0, 2 * Math.PI); ctx.stroke();
    }
    function paint() {
      sctx.drawImage(src, 0, 0, sw, sh);
      tctx.drawImage(tgt, 0, 0, tw, th);
      if (!answer) return;
      const r = Math.max(6, Math.round(Math.max(sw, sh) / 60)), rt = Math.max(6, Math.round(Math.max(tw, th) / 60));
      if (heat) { tctx.globalAlpha = +opacity.value / 100; tctx.drawImage(heat, 0, 0, tw, th); tctx.globalAlpha = 1; }
      cross(sctx, answer.source[0] + 0.5, answer.source[1] + 0.5, r, "#ffffff");
      cross(tctx, answer.target[0] + 0.5, answer.target[1] + 0.5, rt, "#ffffff");
    }
    async function click(e) {
      const rect = sc.getBoundingClientRect();
      const x = Math.min(sw - 1, Math.max(0, Math.floor(((e.clientX - rect.left) * sw) / rect.width)));
      const y = Math.min(sh - 1, Math.max(0, Math.floor(((e.clientY - rect.top) * sh) / rect.height)));
      const mine = ++busy;
      const t0 = performance.now();
      try {
        const a = await api(`api/match/click?x=${x}&y=${y}`);
        const img = await loadImage(a.heatmap);
        if (mine !== busy) return;
        answer = a; heat = img;
        paint();
        const ms = performance.now() - t0;
        out.replaceChildren(
          `(${a.source[0]}, ${a.source[1]}) → (${a.target[0]}, ${a.target[1]})  cosine ${a.score.toFixed(4)}  ·  `,
          el("span", { class: "legend", title: "heatmap colours: low to high cosine" }), ` ${a.min.toFixed(2)} … ${a.max.toFixed(2)}  ·  `,
          `answered in ${a.total_ms.toFixed(1)} ms (${ms.toFixed(0)} ms with the page)`);
        Object.assign(out.dataset, { source: a.source.join(","), target: a.target.join(","), score: String(a.score) });
        tc.dataset.target = a.target.join(",");
        setStatus("");
      } catch (err) {
        setStatus(err.message);
      }
    }
    sc.addEventListener("click", click);
    opacity.addEventListener("input", paint);
    paint();
    const feat = m.features ? `features ${m.features.join("×")}` : "";
    setMain(
      el("div", { class: "toolbar" }, el("div", { class: "grow" }, out), el("label", {}, "heatmap", opacity)),
      el("div", { class: "panes" },
        el("figure", {}, el("figcaption", {}, el("span", {}, `source: ${m.source} (${sw}×${sh}) — click a point`)), sc),
        el("figure", {}, el("figcaption", {}, el("span", {}, `target: ${m.target} (${tw}×${th})`), el("span", {}, "cosine similarity")), tc)),
      el("p", { class: "note" }, [m.model && `model ${m.model}`, m.prompt ? `prompt "${m.prompt}"` : "no prompt", feat,
        "the match is the target pixel of highest cosine similarity with the clicked source pixel's feature (features upsampled bilinearly to the image sizes)"]
        .filter(Boolean).join(" · ")));
    return { destroy() { sc.removeEventListener("click", click); } };
  }

  // ------------------------------------------------------------------ routing
  async function route() {
    if (current && current.destroy) current.destroy();
    current = null;
    setStatus("");
    try {
      if (!info) info = await api("api/info");
      if (info.mode === "match") { current = await showMatch(info); return; }
      const m = location.hash.match(/^#\/v\/([^?]*)(?:\?f=(\d+))?/);
      if (m) { current = await showResult(decodeURIComponent(m[1]), m[2] ? +m[2] : 0); return; }
      const list = await api("api/results");
      if (list.single && list.videos.length === 1) { location.replace(`#/v/${enc(list.videos[0].name)}`); return; }
      current = showList(list);
    } catch (err) {
      setMain(el("p", { class: "error", id: "error" }, err.message), el("p", {}, el("a", { href: "#/" }, "back to the list")));
    }
  }
  let lastRoute = null;
  window.addEventListener("hashchange", () => {
    // setHash() only replaces ?f= while a result is shown: no new route for that
    const key = location.hash.replace(/\?.*$/, "");
    if (key === lastRoute) return;
    lastRoute = key;
    route();
  });
  lastRoute = location.hash.replace(/\?.*$/, "");
  route();
})();

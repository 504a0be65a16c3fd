// genrevision page: queue dropped files, upload them one after another to
// /api/predict, show the answer. Plain JS, talks to this server only.
"use strict";

const PALETTE = ["#6a3fb5", "#d9480f", "#1971c2", "#2f9e44", "#c2255c", "#e67700", "#0c8599",
                 "#5c940d", "#862e9c", "#495057", "#a61e4d", "#364fc7"];
const state = { labels: [], limits: null, queue: [], busy: false, shown: null };
const $ = (sel) => document.querySelector(sel);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function colour(genre) {
  const i = state.labels.indexOf(genre);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

function mmss(s) {
  s = Math.round(s);
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function showError(name, detail) {
  const box = $("#error");
  let line = String(detail || "failed").split("\n")[0];
  if (name && !line.startsWith(name)) line = name + ": " + line;
  box.textContent = line;
  box.title = line;
  box.hidden = false;
}

// ---------------------------------------------------------------- the model

async function loadModel() {
  try {
    const r = await fetch("/api/model");
    const m = await r.json();
    if (!r.ok) throw new Error(m.detail || r.statusText);
    state.labels = m.labels;
    state.limits = m.limits;
    $("#model-info").textContent = `${m.recipe.name} recipe on ${m.backbone}, trained on ${m.n_train} tracks · ` +
      `genres: ${m.labels.join(", ")}`;
    $("#limits").textContent = `${m.limits.audio_extensions.join(", ")} · up to ${m.limits.max_upload_mb} MB, ` +
      `${mmss(m.limits.max_duration_s)} long`;
  } catch (err) {
    $("#model-info").textContent = "";
    showError("", "cannot read the model: " + err.message);
  }
}

// ---------------------------------------------------------------- the queue

function enqueue(files) {
  for (const file of files) {
    const li = el("li");
    const name = el("div", "name", file.name);
    const bar = el("div", "progress");
    bar.appendChild(el("div"));
    name.appendChild(bar);
    const status = el("div", "status", "waiting");
    li.append(name, status);
    $("#queue").appendChild(li);
    const item = { file, li, bar, status, result: null };
    li.addEventListener("click", () => { if (item.result) show(item, 0); });
    state.queue.push(item);
  }
  pump();
}

function pump() {
  if (state.busy) return;
  const next = state.queue.find((it) => !it.started);
  if (!next) return;
  state.busy = true;
  next.started = true;
  upload(next)
    .then((res) => {
      next.result = res.predictions[0];
      next.li.classList.add("done");
      next.status.textContent = `${next.result.genre} (${next.result.probabilities[next.result.genre].toFixed(2)})`;
      $("#error").hidden = true;
      show(next, 0);
    })
    .catch((err) => {
      next.li.classList.add("failed");
      next.status.textContent = "failed";
      next.status.title = err.message;
      showError(next.file.name, err.message);
    })
    .finally(() => {
      next.bar.hidden = true;
      state.busy = false;
      pump();
    });
}

function upload(item) {
  return new Promise((resolve, reject) => {
    // Said here: the server cuts a too large upload off, and a browser may report only a reset connection.
    const maxMb = state.limits ? state.limits.max_upload_mb : Infinity;
    if (item.file.size > maxMb * 1048576) {
      reject(new Error(`too large (${(item.file.size / 1048576).toFixed(1)} MB; this server takes at most ${maxMb} MB)`));
      return;
    }
    if (item.file.size === 0) {
      reject(new Error("empty file (0 bytes)"));
      return;
    }
    const xhr = new XMLHttpRequest();
    const fill = item.bar.firstChild;
    xhr.open("POST", "/api/predict");
    xhr.responseType = "json";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        const pct = Math.round((100 * e.loaded) / e.total);
        fill.style.width = pct + "%";
        item.status.textContent = `uploading ${pct}%`;
      }
    };
    xhr.upload.onload = () => {
      item.bar.classList.add("busy");
      fill.style.width = "";
      item.status.textContent = "listening…";
    };
    xhr.onload = () => {
      const body = xhr.response;
      if (xhr.status === 200 && body && body.predictions) resolve(body);
      else reject(new Error((body && body.detail) || `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => reject(new Error("no answer from the server (connection lost)"));
    const form = new FormData();
    form.append("file", item.file, item.file.name);
    item.status.textContent = "uploading";
    xhr.send(form);
  });
}

// ---------------------------------------------------------------- the answer

function show(item, segment) {
  const p = item.result;
  for (const it of state.queue) it.li.classList.toggle("shown", it === item);
  state.shown = item;
  $("#result").hidden = false;
  $("#result-file").textContent = `${p.path} · ${mmss(p.duration)}`;
  $("#genre").textContent = p.genre;
  $("#confidence").textContent = `${Math.round(100 * p.probabilities[p.genre])} %`;
  drawBars(p.probabilities);
  drawViews(p.views);
  drawTimeline(item, segment);
  showSegment(p, segment);
}

function drawBars(probs) {
  const box = $("#bars");
  box.replaceChildren();
  const rows = Object.entries(probs).sort((a, b) => b[1] - a[1]);
  rows.forEach(([genre, v], i) => {
    const row = el("div", "row" + (i === 0 ? " top" : ""));
    row.dataset.genre = genre;
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = (100 * v).toFixed(1) + "%";
    fill.style.background = colour(genre);
    track.appendChild(fill);
    row.append(el("span", "label", genre), track, el("span", "value", (100 * v).toFixed(1) + " %"));
    box.appendChild(row);
  });
}

function drawViews(views) {
  const box = $("#views");
  box.replaceChildren();
  for (const [view, genre] of Object.entries(views)) {
    const li = el("li");
    li.dataset.view = view;
    const chip = el("span", "chip", genre);
    chip.style.background = colour(genre);
    li.append(el("span", null, view + " spectrogram → "), chip);
    box.appendChild(li);
  }
}

function drawTimeline(item, selected) {
  const segs = item.result.segments;
  const box = $("#timeline");
  box.replaceChildren();
  $("#timeline-box").hidden = segs.length < 2;
  if (segs.length < 2) return;
  segs.forEach((s, i) => {
    const b = el("button", i === selected ? "selected" : "", s.genre);
    b.type = "button";
    b.style.background = colour(s.genre);
    b.style.flexGrow = String(Math.max(s.end - s.start, 1));
    b.title = `${mmss(s.start)}–${mmss(s.end)}: ${s.genre} (${s.probabilities[s.genre].toFixed(2)})`;
    b.dataset.index = String(i);
    b.addEventListener("click", (e) => {
      e.stopPropagation();
      for (const other of box.children) other.classList.toggle("selected", other === b);
      showSegment(item.result, i);
    });
    box.appendChild(b);
  });
}

function showSegment(p, i) {
  const s = p.segments[i];
  for (const img of document.querySelectorAll("#spectrograms img")) {
    const src = s.images[img.dataset.view];
    if (src) img.src = src;
    else img.removeAttribute("src");
    img.dataset.segment = String(i);
  }
  // The span drawn: what the model reads of the segment (a short file may be read only in part).
  const seg = `${mmss(s.start)}–${mmss(s.end)}`;
  const drawn = s.images_span ? `${mmss(s.images_span[0])}–${mmss(s.images_span[1])}` : "nothing to draw (silent)";
  const where = drawn === seg ? seg : `${drawn} of ${seg}`;
  $("#span").textContent = p.segments.length > 1
    ? `(${where}: ${s.genre}, ${Math.round(100 * s.probabilities[s.genre])} %)`
    : `(${where})`;
}

// ---------------------------------------------------------------- wiring

function init() {
  const drop = $("#drop");
  const input = $("#file-input");
  input.addEventListener("change", () => { enqueue(Array.from(input.files)); input.value = ""; });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) enqueue(Array.from(e.dataTransfer.files));
  });
  // A file dropped next to the box must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") input.click(); });
  loadModel();
}

document.addEventListener("DOMContentLoaded", init);

// The page of `fgvc serve`: a photo in, its place and date (from its EXIF, editable), the top 5 out.
// Everything it loads comes from the same server: no script, style, font or map tile from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { file: null, model: null, busy: false };

// ------------------------------------------------------------------------------------------ the model

async function loadModel() {
  const response = await fetch("/v1/model");
  state.model = await response.json();
  const reads = state.model.metadata.length ? state.model.metadata.join(" + ") : "no metadata";
  const prior = state.model.prior ? `; a location prior reads ${state.model.prior.metadata.join(" + ")}` : "";
  $("model").textContent = `${state.model.name}: ${state.model.classes.length} classes, the model reads ${reads}${prior}.`;
}

// -------------------------------------------------------------------------------------------- the map

function drawMap(world) {
  const map = $("map");
  const grid = [];
  for (let lon = -150; lon <= 150; lon += 30) grid.push(`M${lon},-90V90`);
  for (let lat = -60; lat <= 60; lat += 30) grid.push(`M-180,${lat}H180`);
  map.appendChild(path(grid.join(""), "grid"));
  const land = world.rings.map((ring) => {
    let d = "";
    for (let i = 0; i < ring.length; i += 2) d += `${i ? "L" : "M"}${ring[i]},${-ring[i + 1]}`;
    return d + "Z";
  });
  map.appendChild(path(land.join(""), "land"));
  const marker = document.createElementNS(SVG, "circle");
  marker.setAttribute("r", "2.6");
  marker.setAttribute("class", "marker");
  marker.id = "marker";
  marker.style.display = "none";
  map.appendChild(marker);
}

function path(d, cls) {
  const p = document.createElementNS(SVG, "path");
  p.setAttribute("d", d);
  p.setAttribute("class", cls);
  return p;
}

function showMarker() {
  const lat = parseFloat($("lat").value), lon = parseFloat($("lon").value);
  const marker = $("marker");
  const off = $("no-location").checked || !Number.isFinite(lat) || !Number.isFinite(lon);
  marker.style.display = off ? "none" : "";
  $("map").classList.toggle("disabled", $("no-location").checked);
  if (!off) { marker.setAttribute("cx", lon); marker.setAttribute("cy", -lat); }
}

function setLocation(lat, lon) {
  lat = Math.max(-90, Math.min(90, lat));
  lon = ((lon + 540) % 360) - 180;
  $("lat").value = lat.toFixed(2);
  $("lon").value = lon.toFixed(2);
  $("no-location").checked = false;
  changed("entered on the map");
}

function mapClick(event) {
  const box = $("map").getBoundingClientRect();
  setLocation(90 - ((event.clientY - box.top) / box.height) * 180, ((event.clientX - box.left) / box.width) * 360 - 180);
}

function mapKey(event) {
  const steps = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
  if (!(event.key in steps)) return;
  event.preventDefault();
  const size = event.shiftKey ? 10 : 1;
  const lat = parseFloat($("lat").value) || 0, lon = parseFloat($("lon").value) || 0;
  setLocation(lat + steps[event.key][0] * size, lon + steps[event.key][1] * size);
}

// -------------------------------------------------------------------------------------- predictions

async function identify(useForm) {
  if (!state.file) return;
  const form = new FormData();
  form.append("image", state.file);
  form.append("topk", "5");
  form.append("compare", "true");
  if (useForm) {  // what the fields say wins over the photo's EXIF; an empty field means "none"
    const lat = $("lat").value.trim(), lon = $("lon").value.trim(), date = $("date").value;
    if ($("no-location").checked || !lat || !lon) form.append("ignore_location", "true");
    else { form.append("lat", lat); form.append("lon", lon); }
    if (date) form.append("date", date); else form.append("ignore_date", "true");
  }
  setStatus("Identifying…");
  $("identify").disabled = true;
  try {
    const response = await fetch("/v1/predict", { method: "POST", body: form });
    const answer = await response.json();
    if (!response.ok) throw new Error(typeof answer.detail === "string" ? answer.detail : "the request was refused");
    if (!useForm) fillFromPhoto(answer.exif);
    showAnswer(answer);
  } catch (error) {
    setStatus(`Could not identify: ${error.message}`);
    clear($("results"));
    $("without-column").hidden = true;
  } finally {
    $("identify").disabled = false;
  }
}

function fillFromPhoto(exif) {
  $("lat").value = exif.lat ?? "";
  $("lon").value = exif.lon ?? "";
  $("date").value = exif.date ? exif.date.slice(0, 10) : "";
  $("no-location").checked = false;
  const found = [exif.lat !== null ? "place" : null, exif.date ? "date" : null].filter(Boolean);
  $("meta-origin").textContent = found.length
    ? `The ${found.join(" and ")} come from the photo; edit them, click the map, or switch location off.`
    : "The photo carries no place or date: enter them, or click the map.";
  showMarker();
}

function showAnswer(answer) {
  const used = [];
  if (answer.lat !== null) used.push(`${answer.lat.toFixed(3)}, ${answer.lon.toFixed(3)}`);
  if (answer.date) used.push(answer.date.slice(0, 10));
  const source = { exif: "from the photo", cli: "as entered" }[answer.metadata_source] ?? answer.metadata_source;
  setStatus(used.length ? `Using ${used.join(" on ")} (${source}).` : "Using the image alone (no place or date used).");
  fill($("results"), answer.top, answer.without_metadata);
  const compare = answer.without_metadata && answer.metadata_source !== "none";
  $("without-column").hidden = !compare;
  $("with-title").textContent = compare ? "With place and date" : "Top 5";
  if (compare) fill($("without"), answer.without_metadata, null);
}

function fill(list, top, other) {
  clear(list);
  const rankElsewhere = new Map((other || []).map((t, i) => [t.class, i + 1]));
  const names = state.model && state.model.taxonomy.common_name;
  top.forEach((t, i) => {
    const item = document.createElement("li");
    const name = document.createElement("div");
    name.className = "name";
    const label = document.createElement("span");
    label.className = "class";
    label.textContent = t.class;
    if (names && names[t.index]) {
      const common = document.createElement("span");
      common.className = "common";
      common.textContent = ` ${names[t.index]}`;
      label.appendChild(common);
    }
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = `${(100 * t.probability).toFixed(1)} %`;
    name.append(label, value);
    const bar = document.createElement("div");
    bar.className = "bar";
    const fillBar = document.createElement("span");
    fillBar.style.width = `${(100 * t.probability).toFixed(1)}%`;
    bar.appendChild(fillBar);
    item.append(name, bar);
    if (other) {
      const before = rankElsewhere.get(t.class);
      const moved = document.createElement("div");
      moved.className = "moved";
      moved.textContent = before === undefined ? "not in the image-only top 5"
        : before === i + 1 ? "same rank on the image alone" : `#${before} on the image alone`;
      item.appendChild(moved);
    }
    list.appendChild(item);
  });
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
function setStatus(text) { $("status").textContent = text; }

let timer = null;
function changed(origin) {
  showMarker();
  if (origin) $("meta-origin").textContent = `Location ${origin}.`;
  clearTimeout(timer);
  timer = setTimeout(() => identify(true), 350);  // typing and arrow keys settle before a request
}

// ------------------------------------------------------------------------------------------- wiring

function choose(file) {
  if (!file) return;
  state.file = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.alt = `The chosen photo, ${file.name}`;
  preview.hidden = false;
  $("drop-text").hidden = true;
  identify(false);
}

function wire() {
  $("photo").addEventListener("change", (e) => choose(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); choose(e.dataTransfer.files[0]); });
  for (const id of ["lat", "lon"]) $(id).addEventListener("input", () => changed("entered"));
  $("date").addEventListener("change", () => changed(null));
  $("no-location").addEventListener("change", () => changed(null));
  $("identify").addEventListener("click", () => identify(true));
  $("map").addEventListener("click", mapClick);
  $("map").addEventListener("keydown", mapKey);
}

wire();
loadModel().catch(() => { $("model").textContent = "The model information could not be loaded."; });
fetch("/static/world.json").then((r) => r.json()).then(drawMap).then(showMarker)
  .catch(() => setStatus("The world map could not be loaded; enter latitude and longitude by hand."));

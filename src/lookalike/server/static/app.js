// lookalike web page: plain JavaScript, no build step, nothing loaded from elsewhere. Talks to the JSON API of
// the same server. The token (servers started with --token) lives in this page's memory only: it arrives in the
// URL fragment (#token=…, which browsers never send to a server), is removed from the address bar at once, and
// travels only in the Authorization header — thumbnails too are fetched with it, as blobs, never in their URL.
// What is on screen lives in the URL's query (?view=browse&sort=name&page=2&image=7): back/forward and bookmarks work.
let token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
if (location.hash) history.replaceState(null, "", location.pathname + location.search);
const $ = (id) => document.getElementById(id);
const authHeaders = () => (token ? { Authorization: `Bearer ${token}` } : {});
const PAGE = 60;
const VIEWS = ["browse", "search", "dupes", "clusters"];

async function authorisedFetch(url, options = {}) {
  let response = await fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  if (response.status === 401) {
    const given = window.prompt("This lookalike server needs its token:");
    if (given) {
      token = given.trim();
      response = await fetch(url, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
    }
  }
  return response;
}

async function api(url, options = {}) {
  const response = await authorisedFetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText);
  if (response.status === 202 && body.url) return poll(body.url, body.kind);
  return body;
}

async function showThumbnail(img, url) {
  try {
    const response = await authorisedFetch(url);
    if (!response.ok) return;
    img.src = URL.createObjectURL(await response.blob());
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  } catch (error) { /* the card keeps its caption */ }
}

const baseName = (path) => path.split("/").pop();
const bytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} kB`);
const date = (seconds) => new Date(seconds * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });

// -- URL state ------------------------------------------------------------------------------------------------
function readState() {
  const query = new URLSearchParams(location.search);
  const view = VIEWS.includes(query.get("view")) ? query.get("view") : "browse";
  return { view, sort: query.get("sort") || "date", folder: query.get("folder"), page: Math.max(1, +query.get("page") || 1),
           q: query.get("q") || "", similar: query.get("similar"), image: query.get("image"),
           copies: query.get("copies") === "1" };
}

function urlOf(state) {
  const query = new URLSearchParams({ view: state.view });
  if (state.view === "browse") {
    if (state.sort !== "date") query.set("sort", state.sort);
    if (state.folder !== null && state.folder !== undefined) query.set("folder", state.folder);
    if (state.page > 1) query.set("page", state.page);
  }
  if (state.view === "search" && state.q) query.set("q", state.q);
  if (state.view === "search" && state.similar) query.set("similar", state.similar);
  if (state.view === "search" && state.copies) query.set("copies", "1");
  if (state.image) query.set("image", state.image);
  return `?${query}`;
}

function navigate(changes, replace = false) {
  const state = { ...readState(), ...changes };
  history[replace ? "replaceState" : "pushState"](null, "", urlOf(state));
  render();
}
window.addEventListener("popstate", render);

let shown = {};  // what each view last loaded, so back/forward only reloads what changed
async function render() {
  const state = readState();
  document.querySelectorAll(".view").forEach((view) => { view.hidden = view.id !== `view-${state.view}`; });
  document.querySelectorAll("header nav a").forEach((link) => {
    if (link.dataset.view === state.view) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  });
  if (state.view === "browse") await loadBrowse(state);
  if (state.view === "search") await loadSearch(state);
  showViewer(state.image);
}

// -- cards and the viewer -----------------------------------------------------------------------------------
let items = { browse: [], search: [], dupes: [], clusters: [] };

function card(item, label) {
  const element = document.createElement("a");
  element.className = "card";
  element.href = urlOf({ ...readState(), image: item.id });
  element.innerHTML = `<img alt=""><span class="badge"></span><span class="meta"><span class="path"></span></span>`;
  const img = element.querySelector("img");
  img.alt = baseName(item.relative_path);
  showThumbnail(img, item.thumbnail);
  element.querySelector(".badge").textContent = label;
  element.querySelector(".badge").hidden = !label;
  element.querySelector(".path").textContent = item.relative_path;
  element.title = item.relative_path;
  element.dataset.id = item.id;
  element.addEventListener("click", (event) => { event.preventDefault(); navigate({ image: item.id }); });
  return element;
}

function viewerItems() { return items[readState().view] || []; }

function showViewer(id) {
  const viewer = $("viewer");
  if (!id) {
    if (!viewer.hidden) { viewer.hidden = true; document.body.classList.remove("viewing"); lastFocus?.focus(); }
    return;
  }
  const list = viewerItems();
  const item = list.find((i) => String(i.id) === String(id)) || { id, relative_path: `image ${id}`, thumbnail: `/api/thumbnail/${id}` };
  if (viewer.hidden) lastFocus = document.activeElement;
  viewer.hidden = false;
  document.body.classList.add("viewing");
  $("viewer-title").textContent = item.relative_path;
  const meta = [item.width && `${item.width}×${item.height}`, item.size && bytes(item.size), item.mtime && date(item.mtime)];
  const position = list.indexOf(item);
  if (position >= 0) meta.push(`${position + 1} of ${list.length}`);
  $("viewer-meta").textContent = meta.filter(Boolean).join(" · ");
  const img = $("viewer-image");
  img.alt = baseName(item.relative_path);
  img.removeAttribute("src");
  showThumbnail(img, `${item.thumbnail}?size=1600`);
  $("viewer-prev").disabled = position <= 0;
  $("viewer-next").disabled = position < 0 || position >= list.length - 1;
  if (!viewer.contains(document.activeElement)) $("viewer-close").focus();
}
let lastFocus = null;

function step(delta) {
  const list = viewerItems();
  const position = list.findIndex((i) => String(i.id) === String(readState().image));
  const next = list[position + delta];
  if (position >= 0 && next) navigate({ image: next.id }, true);
}
const closeViewer = () => navigate({ image: null });
$("viewer-prev").addEventListener("click", () => step(-1));
$("viewer-next").addEventListener("click", () => step(1));
$("viewer-close").addEventListener("click", closeViewer);
$("viewer-similar").addEventListener("click", () => navigate({ view: "search", similar: readState().image, q: "", image: null }));
document.addEventListener("keydown", (event) => {
  if ($("viewer").hidden) return;
  if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
  if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
  if (event.key === "Escape") { event.preventDefault(); closeViewer(); }
  if (event.key === "Tab") {  // keep focus inside the dialog
    const buttons = [...$("viewer").querySelectorAll("button:not([disabled])")];
    const at = buttons.indexOf(document.activeElement);
    const next = event.shiftKey ? (at <= 0 ? buttons.length - 1 : at - 1) : (at + 1) % buttons.length;
    event.preventDefault();
    buttons[next].focus();
  }
});

// -- browse -----------------------------------------------------------------------------------------------
async function loadFolders() {
  const { folders } = await api("/api/folders");
  $("folder").replaceChildren(new Option("all folders", "\u0000"), ...folders.map((f) => new Option(`${f.folder || "(top folder)"} · ${f.images}`, f.folder)));
}

async function loadBrowse(state) {
  const key = `${state.sort}|${state.folder}|${state.page}`;
  $("sort").value = state.sort;
  if ($("folder").options.length > 1) $("folder").value = state.folder ?? "\u0000";
  if (shown.browse === key) return;
  shown.browse = key;
  const folder = state.folder !== null && state.folder !== undefined ? `&folder=${encodeURIComponent(state.folder)}` : "";
  $("browse-status").textContent = "loading…";
  $("gallery").setAttribute("aria-busy", "true");
  try {
    const page = await api(`/api/browse?sort=${state.sort}&offset=${(state.page - 1) * PAGE}&limit=${PAGE}${folder}`);
    items.browse = page.images;
    $("gallery").replaceChildren(...page.images.map((image) => card(image, "")));
    const pages = Math.max(1, Math.ceil(page.total / PAGE));
    $("browse-status").textContent = `${page.total} images${state.folder !== null && state.folder !== undefined ? ` in ${state.folder || "the top folder"}` : ""}`;
    $("page-label").textContent = `page ${state.page} of ${pages}`;
    $("prev").disabled = state.page <= 1;
    $("next").disabled = state.page >= pages;
  } catch (error) { shown.browse = null; $("browse-status").textContent = `error: ${error.message}`; }
  $("gallery").setAttribute("aria-busy", "false");
}
$("sort").addEventListener("change", () => navigate({ sort: $("sort").value, page: 1 }));
$("folder").addEventListener("change", () => navigate({ folder: $("folder").value === "\u0000" ? null : $("folder").value, page: 1 }));
$("prev").addEventListener("click", () => navigate({ page: readState().page - 1 }));
$("next").addEventListener("click", () => navigate({ page: readState().page + 1 }));
$("browse-form").addEventListener("submit", (event) => event.preventDefault());

// -- clusters -----------------------------------------------------------------------------------------------
$("clusters-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("clusters-status").textContent = "clustering…";
  try {
    const k = $("k").value ? `?k=${$("k").value}` : "";
    const result = await api(`/api/clusters${k}`);
    items.clusters = [];
    $("clusters").replaceChildren(...result.clusters.map((cluster) => {
      const section = document.createElement("section");
      section.className = "group";
      section.innerHTML = `<h3></h3><div class="grid"></div>`;
      section.querySelector("h3").textContent = `${cluster.cluster < 0 ? "Outliers" : `Cluster ${cluster.cluster + 1}`} · ${cluster.images.length} images`;
      const shownImages = cluster.images.slice(0, 24);
      items.clusters.push(...shownImages);
      section.querySelector(".grid").replaceChildren(...shownImages.map((image) => card(image, "")));
      return section;
    }));
    $("clusters-status").textContent = `${result.k} clusters (${result.method}${result.silhouette ? `, silhouette ${result.silhouette.toFixed(2)}` : ""})`;
  } catch (error) { $("clusters-status").textContent = `error: ${error.message}`; }
});

// -- start ------------------------------------------------------------------------------------------------
function refreshInfo() {
  return api("/api/info").then((info) => {
    $("info").textContent = `${info.images} images · ${info.model}`;
    if (!info.text_search) $("text").placeholder = "paste an image URL (this model has no text search)";
  }).catch((error) => { $("info").textContent = `error: ${error.message}`; });
}
refreshInfo();
document.querySelectorAll("header nav a").forEach((link) => link.addEventListener("click", (event) => {
  event.preventDefault();
  navigate({ view: link.dataset.view, image: null });
}));
loadFolders().then(() => { $("folder").value = readState().folder ?? "\u0000"; }).catch(() => {});
document.addEventListener("DOMContentLoaded", render);  // after every script (search.js, review.js) has run

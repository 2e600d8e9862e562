// lookalike web page: plain JavaScript, no build step. Talks to the JSON API of the same server.
// The token (servers started with --token) lives in this page's memory only: it arrives in the URL fragment
// (#token=…, which browsers never send to a server), is removed from the address bar at once, and travels only in
// the Authorization header — thumbnails too are fetched with it, as blobs, never with the token in their URL.
let token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
if (location.hash) history.replaceState(null, "", location.pathname + location.search);
const $ = (id) => document.getElementById(id);
const authHeaders = () => (token ? { Authorization: `Bearer ${token}` } : {});

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
  if (response.status === 202 && body.url) return poll(body.url);
  return body;
}

async function poll(url) {  // a background job: wait for its result
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const job = await api(url);
    if (job.status === "done") return job.result;
    if (job.status === "failed") throw new Error(job.error);
  }
}

async function showThumbnail(img, url) {
  try {
    const response = await authorisedFetch(url);
    if (!response.ok) return;
    img.src = URL.createObjectURL(await response.blob());
    img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  } catch (error) { /* the card keeps its caption */ }
}

function card(item, label) {
  const element = document.createElement("figure");
  element.className = "card";
  element.innerHTML = `<img loading="lazy" alt=""><span class="badge"></span><figcaption class="meta"><div class="path"></div></figcaption>`;
  showThumbnail(element.querySelector("img"), item.thumbnail);
  element.querySelector(".badge").textContent = label;
  element.querySelector(".path").textContent = item.relative_path;
  element.title = `${item.relative_path}\nclick: more like this`;
  element.dataset.id = item.id;
  element.addEventListener("click", () => { showView("search"); moreLikeThis(item); });
  return element;
}

function showResults(result) {
  const grid = $("results");
  grid.replaceChildren(...result.results.map((r) => card(r, `${r.score.toFixed(3)} · ${r.percent.toFixed(1)}%`)));
  $("status").textContent = `${result.results.length} results for ${result.query} (${result.method} search)`;
}

async function run(label, promise) {
  $("status").textContent = `searching ${label}…`;
  try { showResults(await promise); } catch (error) { $("status").textContent = `error: ${error.message}`; $("results").replaceChildren(); }
}

function searchFile(file) {
  if (!file) return;
  const preview = $("query-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("file", file, file.name || "pasted image");
  form.append("k", "24");
  run(file.name || "pasted image", api("/api/search/image", { method: "POST", body: form }));
}

function moreLikeThis(item) {
  showThumbnail($("query-preview"), item.thumbnail);
  $("query-preview").hidden = false;
  run(item.relative_path, api(`/api/search/similar/${item.id}?k=24`));
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); searchFile(event.dataTransfer.files[0]); });
$("file").addEventListener("change", (event) => searchFile(event.target.files[0]));
document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData?.files || [])].find((f) => f.type.startsWith("image/"));
  if (file) searchFile(file);
});
$("text-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("query-preview").hidden = true;
  const url = /^https?:\/\//.test(text) ? `/api/search/url?k=24&url=${encodeURIComponent(text)}` : `/api/search/text?k=24&q=${encodeURIComponent(text)}`;
  run(`“${text}”`, api(url));
});

$("load-dupes").addEventListener("click", async () => {
  $("dupes-status").textContent = "looking for duplicates…";
  try {
    const { groups } = await api(`/api/dupes?verify=${$("verify").checked}`);
    $("dupes").replaceChildren(...groups.map((group, index) => {
      const section = document.createElement("div");
      section.className = "group";
      section.innerHTML = `<h2></h2><div class="grid"></div>`;
      section.querySelector("h2").textContent = `Group ${index + 1} · ${group.duplicates.length + 1} images`;
      const keeper = card(group.keeper, "keep");
      keeper.classList.add("keep");
      const others = group.duplicates.map((d) => card(d, `${d.score.toFixed(3)}${d.exact ? " · exact" : ""}${d.verified ? " · verified" : ""}`));
      section.querySelector(".grid").replaceChildren(keeper, ...others);
      return section;
    }));
    $("dupes-status").textContent = `${groups.length} groups; the suggested keeper is framed in green`;
  } catch (error) { $("dupes-status").textContent = `error: ${error.message}`; }
});

$("load-clusters").addEventListener("click", async () => {
  $("clusters-status").textContent = "clustering…";
  try {
    const k = $("k").value ? `?k=${$("k").value}` : "";
    const result = await api(`/api/clusters${k}`);
    $("clusters").replaceChildren(...result.clusters.map((cluster) => {
      const section = document.createElement("div");
      section.className = "group";
      section.innerHTML = `<h2></h2><div class="grid"></div>`;
      section.querySelector("h2").textContent = `${cluster.cluster < 0 ? "Outliers" : `Cluster ${cluster.cluster + 1}`} · ${cluster.images.length} images`;
      section.querySelector(".grid").replaceChildren(...cluster.images.slice(0, 24).map((image) => card(image, "")));
      return section;
    }));
    $("clusters-status").textContent = `${result.k} clusters (${result.method}${result.silhouette ? `, silhouette ${result.silhouette.toFixed(2)}` : ""})`;
  } catch (error) { $("clusters-status").textContent = `error: ${error.message}`; }
});

function showView(name) {
  document.querySelectorAll(".view").forEach((view) => { view.hidden = view.id !== `view-${name}`; });
  document.querySelectorAll("nav button").forEach((button) => button.classList.toggle("active", button.dataset.view === name));
}
document.querySelectorAll("nav button").forEach((button) => button.addEventListener("click", () => showView(button.dataset.view)));

api("/api/info").then((info) => {
  $("info").textContent = `${info.images} images · ${info.model}`;
  if (!info.text_search) $("text").placeholder = "paste an image URL (this model has no text search)";
}).catch((error) => { $("info").textContent = `error: ${error.message}`; });

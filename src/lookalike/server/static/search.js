// The search view: by an uploaded, pasted or dropped image, an image URL, text, or "more like this"; with
// "copies only" the server's copy lookup (Index.find_copies: edited, flipped, turned copies) answers instead,
// each result labelled with its copy score. Uses app.js's globals ($, api, card, items, navigate, shown, …).
let lastFile = null;  // the uploaded query, searched again when "copies only" is toggled

function resultLabel(r) {
  return typeof r.copy_score === "number" ? `copy ${r.copy_score.toFixed(3)} · ${r.score.toFixed(3)}`
    : `${r.score.toFixed(3)} · ${r.percent.toFixed(1)}%`;
}

function showResults(result) {
  items.search = result.results;
  $("results").replaceChildren(...result.results.map((r) => card(r, resultLabel(r))));
  const method = result.method.startsWith("copy") ? result.method : `${result.method} search`;
  $("status").textContent = `${result.results.length} results for ${result.query} (${method})`;
}

async function run(label, promise) {
  $("status").textContent = `searching ${label}…`;
  try { showResults(await promise); } catch (error) { $("status").textContent = `error: ${error.message}`; $("results").replaceChildren(); items.search = []; }
}

async function loadSearch(state) {
  $("copies").checked = state.copies;
  const key = `${state.q}|${state.similar}|${state.copies}`;
  if (shown.search === key || (!state.q && !state.similar)) return;
  shown.search = key;
  lastFile = null;
  $("text").value = state.q;
  if (state.similar) {
    showThumbnail($("query-preview"), `/api/thumbnail/${state.similar}`);
    $("query-preview").hidden = false;
    return run("similar images", api(`/api/search/similar/${encodeURIComponent(state.similar)}?k=24`));
  }
  $("query-preview").hidden = true;
  const isUrl = /^https?:\/\//.test(state.q);
  if (state.copies && !isUrl) {
    $("status").textContent = "Copy lookups need an image: drop or paste one, or give an image URL.";
    $("results").replaceChildren();
    items.search = [];
    return;
  }
  const url = isUrl ? `/api/search/url?k=24&copies=${state.copies}&url=${encodeURIComponent(state.q)}` : `/api/search/text?k=24&q=${encodeURIComponent(state.q)}`;
  return run(`“${state.q}”`, api(url));
}

function searchFile(file) {
  if (!file) return;
  const preview = $("query-preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  const form = new FormData();
  form.append("file", file, file.name || "pasted image");
  form.append("k", "24");
  form.append("copies", String($("copies").checked));
  if (readState().view !== "search" || readState().q || readState().similar) navigate({ view: "search", q: "", similar: null, image: null });
  shown.search = `upload ${Date.now()}`;
  lastFile = file;
  run(file.name || "pasted image", api("/api/search/image", { method: "POST", body: form }));
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
  if (text) navigate({ view: "search", q: text, similar: null, image: null });
});

$("copies").addEventListener("change", () => {
  const file = lastFile;
  navigate({ view: "search", copies: $("copies").checked }, true);
  if (file && !readState().q && !readState().similar) searchFile(file);
});

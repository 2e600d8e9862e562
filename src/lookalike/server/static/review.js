// The duplicates review: each group's members with their full path, resolution, size and date, the suggested
// keeper (and why, when the server says), where a verified copy sits in the image that contains it (an outline
// over the thumbnail), a keep/move choice per member, and Apply — which moves the "move" files into the indexed
// folder's .lookalike-trash/<batch>/ with a move manifest (never deletes) — with Undo for the last manifest and
// a list of earlier ones (the CLI's `dupes --move-to` manifests inside the folder too).
// Uses app.js's globals ($, api, card, items, navigate, showThumbnail, bytes, date) and jobs.js's JobStopped.
let lastManifest = null;
const SVG = "http://www.w3.org/2000/svg";

function regionOverlay(entry, outlines) {  // the copies' quadrilaterals, in this image's pixels, over its thumbnail
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "region");
  svg.setAttribute("viewBox", `0 0 ${entry.width} ${entry.height}`);
  svg.setAttribute("preserveAspectRatio", "xMidYMid meet");  // the thumbnail is shown whole (object-fit: contain)
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", outlines.map((o) => `outline of where ${o.name} sits in this image`).join("; "));
  for (const outline of outlines) {
    const polygon = document.createElementNS(SVG, "polygon");
    polygon.setAttribute("points", outline.quad.map(([x, y]) => `${x},${y}`).join(" "));
    polygon.dataset.copy = outline.name;
    svg.append(polygon);
  }
  return svg;
}

function coveredShare(quad, width, height) {  // the quadrilateral's area over the image's (shoelace formula)
  const twice = quad.reduce((sum, [x, y], i) => { const [nx, ny] = quad[(i + 1) % quad.length]; return sum + x * ny - nx * y; }, 0);
  return Math.abs(twice) / 2 / (width * height);
}

function outlinesIn(entry, group, isKeeper) {  // as the HTML report: the keeper shows all, a copy its own; a copy
  // of the whole image is left out (its outline would be the image's own border and say nothing)
  return group.duplicates.filter((d) => d.region && d.region.in === entry.relative_path && (isKeeper || d === entry)
      && coveredShare(d.region.quad, entry.width, entry.height) < 0.95)
    .map((d) => ({ quad: d.region.quad, name: baseName(d.relative_path === entry.relative_path ? group.keeper.relative_path : d.relative_path) }));
}

function member(entry, isKeeper, group, described) {
  const row = document.createElement("div");
  row.className = `member${isKeeper ? " keeper" : ""}`;
  row.innerHTML = `<div class="thumb"></div><div class="facts"><p class="full-path"></p><p class="muted details"></p></div>
    <fieldset class="choice"><legend class="visually-hidden"></legend>
      <label><input type="radio" value="keep"> keep</label><label><input type="radio" value="move"> move</label></fieldset>`;
  const thumb = card(entry, isKeeper ? "keeper" : `${entry.score.toFixed(3)}`);
  const outlines = outlinesIn(entry, described, isKeeper);
  if (outlines.length && entry.width && entry.height) thumb.querySelector("img").after(regionOverlay(entry, outlines));
  row.querySelector(".thumb").append(thumb);
  row.querySelector(".full-path").textContent = entry.relative_path;
  const badges = [entry.exact && "identical pixels", entry.verified && "verified by local features", entry.note,
    outlines.length && `outlined: where ${outlines.map((o) => o.name).join(", ")} sits`].filter(Boolean);
  row.querySelector(".details").textContent = [`${entry.width}×${entry.height}`, bytes(entry.size),
    entry.mtime ? date(entry.mtime) : "", isKeeper ? "" : `similarity ${entry.score.toFixed(3)}`, ...badges].filter(Boolean).join(" · ");
  row.querySelector("legend").textContent = `Keep or move ${entry.relative_path}`;
  row.querySelectorAll("input").forEach((input) => {
    input.name = `choice-${group}-${entry.id}`;
    input.checked = input.value === (isKeeper ? "keep" : "move");
    input.addEventListener("change", summarise);
  });
  row.dataset.id = entry.id;
  return row;
}

function groupSection(group, index) {
  const section = document.createElement("section");
  section.className = "group";
  section.innerHTML = `<h3></h3><p class="reason muted"></p><div class="members"></div>`;
  section.querySelector("h3").textContent = `Group ${index + 1} · ${group.duplicates.length + 1} images`;
  const reason = group.reason || group.keeper.reason;
  section.querySelector(".reason").textContent = reason ? `Suggested keeper: ${reason}` : "Suggested keeper: the largest resolution, then the largest file, then the oldest.";
  section.querySelector(".members").replaceChildren(member(group.keeper, true, index, group),
    ...group.duplicates.map((d) => member(d, false, index, group)));
  return section;
}

function choices() {
  const marked = { keep: [], move: [] };
  document.querySelectorAll("#dupes .member").forEach((row) => {
    const chosen = row.querySelector("input:checked");
    if (chosen) marked[chosen.value].push(+row.dataset.id);
  });
  return marked;
}

function summarise() {
  const { keep, move } = choices();
  $("review-summary").textContent = `${move.length} to move, ${keep.length} to keep`;
  $("apply").disabled = move.length === 0;
}

async function loadDupes(event) {
  event?.preventDefault();
  $("dupes-status").textContent = "looking for duplicates…";
  const threshold = $("threshold").value ? `&threshold=${$("threshold").value}` : "";
  try {
    const result = await api(`/api/dupes?verify=${$("verify").checked}${threshold}`);
    items.dupes = result.groups.flatMap((group) => [group.keeper, ...group.duplicates]);
    $("dupes").replaceChildren(...result.groups.map(groupSection));
    const source = result.threshold !== undefined && result.threshold !== null ? ` at threshold ${(+result.threshold).toFixed(3)} (${result.threshold_source})` : "";
    $("dupes-status").textContent = `${result.groups.length} groups${source}. Choose keep or move for each image; moved files go to the folder's .lookalike-trash, never deleted.`;
    $("threshold").placeholder = result.threshold ? (+result.threshold).toFixed(3) : "default";
    $("review").hidden = result.groups.length === 0;
    summarise();
  } catch (error) { $("dupes-status").textContent = error.cancelled ? "Cancelled: no groups were found." : `error: ${error.message}`; }
  await loadEarlier();
}

async function loadEarlier() {  // move manifests inside the folder not yet put back (the page's and the CLI's)
  try {
    const manifests = (await api("/api/dupes/manifests")).manifests.filter((m) => m.manifest !== lastManifest);
    $("earlier-list").replaceChildren(...manifests.map((m) => {
      const entry = document.createElement("li");
      entry.innerHTML = `<span class="muted"></span> <button type="button" class="secondary">Put back</button>`;
      entry.querySelector("span").textContent = `${m.files} files moved ${date(m.created)} · ${m.manifest}`;
      entry.querySelector("button").setAttribute("aria-label", `Put back the ${m.files} files of ${m.manifest}`);
      entry.querySelector("button").addEventListener("click", () => undoManifest(m.manifest));
      return entry;
    }));
    $("earlier").hidden = manifests.length === 0;
  } catch (error) { $("earlier").hidden = true; }
}

async function applyReview() {
  const plan = choices();
  $("apply").disabled = true;
  let message;
  try {
    const result = await api("/api/dupes/apply", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(plan) });
    lastManifest = result.manifest;
    message = `Moved ${result.moved.length} files to ${result.manifest.replace(/[^/]*$/, "")} (Undo puts them back).`;
  } catch (error) {
    const partial = error.job?.result;
    if (!(error.cancelled && partial)) { $("dupes-status").textContent = `error: ${error.message}`; $("apply").disabled = false; return; }
    lastManifest = partial.manifest;
    message = `Cancelled after moving ${partial.moved.length} of ${plan.move.length} files (Undo puts them back).`;
  }
  $("undo").hidden = false;
  await loadDupes();
  $("dupes-status").textContent = message;
  afterChange();
}

async function undoManifest(manifest) {
  $("undo").disabled = true;
  let message;
  try {
    const result = await api("/api/dupes/undo", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ manifest }) });
    message = `Put back ${result.restored.length} files.`;
  } catch (error) {
    message = error.cancelled ? `Cancelled: put back ${error.job.result?.restored.length ?? 0} files; Undo again for the rest.` : `error: ${error.message}`;
    if (!error.cancelled) { $("dupes-status").textContent = message; $("undo").disabled = false; return; }
  }
  if (manifest === lastManifest && !message.startsWith("Cancelled")) { lastManifest = null; $("undo").hidden = true; }
  $("undo").disabled = false;
  await loadDupes();
  $("dupes-status").textContent = message;
  afterChange();
}

function afterChange() {  // the collection changed: the gallery and counts must not show stale pages
  shown = {};
  refreshInfo();
  loadFolders().catch(() => {});
}

$("dupes-form").addEventListener("submit", loadDupes);
$("apply").addEventListener("click", applyReview);
$("undo").addEventListener("click", () => lastManifest && undoManifest(lastManifest));

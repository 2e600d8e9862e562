// The duplicates review: each group's members with their full path, resolution, size and date, the suggested
// keeper (and why, when the server says), a keep/move choice per member, and Apply — which moves the "move"
// files into the indexed folder's .lookalike-trash/<batch>/ (never deletes) — with Undo for the last batch.
// Uses app.js's globals ($, api, card, items, navigate, showThumbnail, bytes, date).
let lastBatch = null;

function member(entry, isKeeper, group) {
  const row = document.createElement("div");
  row.className = `member${isKeeper ? " keeper" : ""}`;
  row.innerHTML = `<div class="thumb"></div><div class="facts"><p class="full-path"></p><p class="muted details"></p></div>
    <fieldset class="choice"><legend class="visually-hidden"></legend>
      <label><input type="radio" value="keep"> keep</label><label><input type="radio" value="move"> move</label></fieldset>`;
  row.querySelector(".thumb").append(card(entry, isKeeper ? "keeper" : `${entry.score.toFixed(3)}`));
  row.querySelector(".full-path").textContent = entry.relative_path;
  const badges = [entry.exact && "identical pixels", entry.verified && "verified by local features"].filter(Boolean);
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
  section.querySelector(".members").replaceChildren(member(group.keeper, true, index),
    ...group.duplicates.map((d) => member(d, false, index)));
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
  } catch (error) { $("dupes-status").textContent = `error: ${error.message}`; }
}

async function applyReview() {
  const plan = choices();
  $("apply").disabled = true;
  try {
    const result = await api("/api/dupes/apply", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(plan) });
    lastBatch = result.batch;
    $("undo").hidden = false;
    await loadDupes();
    $("dupes-status").textContent = `Moved ${result.moved.length} files to ${result.manifest.replace(/\/manifest\.json$/, "/")} (Undo puts them back).`;
    afterChange();
  } catch (error) { $("dupes-status").textContent = `error: ${error.message}`; $("apply").disabled = false; }
}

async function undoReview() {
  if (!lastBatch) return;
  $("undo").disabled = true;
  try {
    const result = await api(`/api/dupes/undo/${lastBatch}`, { method: "POST" });
    lastBatch = null;
    $("undo").hidden = true;
    await loadDupes();
    $("dupes-status").textContent = `Put back ${result.restored.length} files.`;
    afterChange();
  } catch (error) { $("dupes-status").textContent = `error: ${error.message}`; } finally { $("undo").disabled = false; }
}

function afterChange() {  // the collection changed: the gallery and counts must not show stale pages
  shown = {};
  refreshInfo();
  loadFolders().catch(() => {});
}

$("dupes-form").addEventListener("submit", loadDupes);
$("apply").addEventListener("click", applyReview);
$("undo").addEventListener("click", undoReview);

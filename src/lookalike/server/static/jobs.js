// Background jobs (duplicates with verification, applying and undoing a review): a progress bar fed by the
// server, with a Cancel button. Cancelling asks the server to stop the job at its next step; an apply stops
// between two moves and its result (the moves made) comes back on the error, so Undo can put them back.
// Uses app.js's globals ($, api, authorisedFetch).
const JOB_LABELS = { apply: "Moving files", undo: "Putting files back", dupes: "Verifying duplicates" };
const PHASES = { "verifying pairs": "Verifying pairs", "choosing keepers": "Choosing keepers", "moving files": "Moving files",
                 "putting files back": "Putting files back", "updating the index": "Updating the index" };
let runningJob = null;

class JobStopped extends Error {
  constructor(job) {
    super(job.status === "cancelled" ? "cancelled" : job.error || job.status);
    this.job = job;
    this.cancelled = job.status === "cancelled";
  }
}

function showProgress(job) {
  const { done, total, what } = job.progress;
  const bar = $("job-bar");
  $("job-label").textContent = `${PHASES[what] || JOB_LABELS[job.kind] || "Working"}${job.cancel_requested ? " (stopping…)" : ""}`;
  if (total) { bar.max = total; bar.value = done; $("job-count").textContent = `${done} / ${total}`; }
  else { bar.removeAttribute("value"); $("job-count").textContent = ""; }
}

async function poll(url, kind) {  // a background job: show its progress until it ends
  let job = { kind, progress: { done: 0, total: null }, url };
  runningJob = job;
  showProgress(job);
  $("job-cancel").disabled = false;
  $("job").hidden = false;
  try {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      job = await api(url);
      runningJob = job;
      showProgress(job);
      if (job.status === "done") return job.result;
      if (job.status === "failed" || job.status === "cancelled") throw new JobStopped(job);
    }
  } finally { $("job").hidden = true; runningJob = null; }
}

async function cancelJob() {
  if (!runningJob) return;
  $("job-cancel").disabled = true;
  try {
    showProgress(await api(`${runningJob.url}/cancel`, { method: "POST" }));
  } catch (error) { $("job-cancel").disabled = false; }
}
$("job-cancel").addEventListener("click", cancelJob);

// Follow a job live: server-sent events from GET /api/v1/jobs/{id}/events
// (`status` = the job, first and on each change; `step` = each step as it happens),
// falling back to polling GET /api/v1/jobs/{id} when the stream is not available.

import { getJson, jobUrl } from "./api.js";

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_FIRST_MS = 400;
const POLL_MAX_MS = 3000;
const STREAM_RETRY_MS = 5000;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * handlers: onStatus(job), onStep(step), onNote(text or null: why nothing moves),
 * onGone(error: the job does not exist). Returns {stop()}.
 */
export function followJob(id, handlers) {
  const { onStatus, onStep = () => {}, onNote = () => {}, onGone = () => {} } = handlers;
  let stopped = false;
  let source = null;
  let streamWorked = false;

  const stop = () => {
    stopped = true;
    if (source) { source.close(); source = null; }
  };

  const status = (job) => {
    onStatus(job);
    if (TERMINAL.has(job.status)) { stop(); }
  };

  function stream() {
    source = new EventSource(jobUrl(id, "events"));
    source.addEventListener("status", (event) => {
      streamWorked = true;
      onNote(null);
      status(JSON.parse(event.data));
    });
    source.addEventListener("step", (event) => { onStep(JSON.parse(event.data)); });
    source.addEventListener("error", () => {
      if (stopped || !source) { return; }
      if (source.readyState === EventSource.CLOSED) {
        // Refused (not 200 text/event-stream): poll instead. A stream that never worked
        // (no such endpoint on this server) is not tried again.
        source.close();
        source = null;
        poll(streamWorked);
      } else {
        onNote("Connection lost; reconnecting\u2026");
      }
    });
  }

  async function poll(retryStream) {
    const retryAt = Date.now() + STREAM_RETRY_MS;
    let delay = POLL_FIRST_MS;
    while (!stopped) {
      try {
        const job = await getJson(jobUrl(id));
        onNote(null);
        status(job);
      } catch (err) {
        if (err.status === 404) {
          stop();
          onGone(err);
          return;
        }
        onNote(`${err.message}; still trying\u2026`);
      }
      if (stopped) { return; }
      if (retryStream && Date.now() >= retryAt) {
        stream();
        return;
      }
      await sleep(delay);
      delay = Math.min(delay * 1.5, POLL_MAX_MS);
    }
  }

  if ("EventSource" in window) { stream(); } else { poll(false); }
  return { stop };
}

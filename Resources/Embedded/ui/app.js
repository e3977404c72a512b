// Dashboard of the Azure DICOM mirror plugin, served at /azure-dicom/ui/. Every URL is relative
// to the page's path ("../status" is /azure-dicom/status), so the page works behind Orthanc's
// authentication and behind a reverse-proxy prefix. Nothing is loaded from another host.
'use strict';

const REFRESH_INTERVAL_MS = 10000;
const FAILED_PAGE_SIZE = 50;
const HISTORY_SECONDS = 3600;
const POLL_INTERVAL_MS = 1000;
// Polling after "Mirror to Azure" or "Retry failed" stops after this many polls (10 minutes).
const MAX_POLLS = 600;
const STATES = ['Pending', 'Sending', 'Mirrored', 'AlreadyPresent', 'Failed', 'Skipped',
                'RolledBack'];
const SUMMARY_TEXT = {
  Mirrored: 'Mirrored',
  Pending: 'Pending',
  Failed: 'Failed',
  NotMirrored: 'Not mirrored',
};
const SVG_NS = 'http://www.w3.org/2000/svg';

// An error response of the REST API; message is its "Message" when it has one.
class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Resolves a URL relative to the page against the page's origin and path, without the user name
// and password that the page's URL may contain (http://user:password@host/...). fetch() rejects
// a URL with credentials, but the browser still sends the Authorization header that it used for
// the page with a request to the same origin.
function toRequestUrl(path) {
  return new URL(path, window.location.origin + window.location.pathname).href;
}

// Sends a request to the plugin's REST API and returns the parsed JSON response. Throws an
// ApiError with the response's "Message" (or the HTTP status) when the status is not 2xx.
async function callApi(method, path, body) {
  const options = {
    method,
    headers: { Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'same-origin',
  };
  if (body !== undefined) {
    options.headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(body);
  }

  let response;
  try {
    response = await fetch(toRequestUrl(path), options);
  } catch (error) {
    throw new ApiError(`no response from Orthanc for ${method} ${path} (${error.message})`, 0);
  }

  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (error) {
      data = null;
    }
  }

  if (!response.ok) {
    const message = data && data.Message ? data.Message
      : `HTTP ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, response.status);
  }
  if (data === null) {
    throw new ApiError(`${method} ${path} returned a response that is not JSON`,
                       response.status);
  }
  return data;
}

const getJson = (path) => callApi('GET', path);
const postJson = (path, body) => callApi('POST', path, body);

function byId(id) {
  return document.getElementById(id);
}

// Creates an element with the given text (a string or number) and attributes.
function make(tag, text, attributes) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) {
    node.textContent = String(text);
  }
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, value);
  }
  return node;
}

function showMessage(id, text, isError) {
  const node = byId(id);
  node.textContent = text;
  node.classList.toggle('error', Boolean(isError));
  node.hidden = false;
}

function hideMessage(id) {
  byId(id).hidden = true;
}

// Runs an action behind a button: disables the button meanwhile and shows the error's message.
async function runAction(button, messageId, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    showMessage(messageId, error.message, true);
  } finally {
    button.disabled = false;
  }
}

function formatNumber(value, digits) {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '–';
  }
  return Number(value).toLocaleString('en-US', {
    maximumFractionDigits: digits === undefined ? 0 : digits,
  });
}

// Returns the count with the singular or plural noun: "1 instance", "3 instances".
function formatCount(count, singular, plural) {
  const noun = Number(count) === 1 ? singular : (plural || `${singular}s`);
  return `${formatNumber(count)} ${noun}`;
}

// Formats a rate in requests per second, per minute or per hour, whichever is the first to
// reach 1, so that a few requests in an hour do not round to "0 /s".
function formatRate(perSecond) {
  const value = Number(perSecond) || 0;
  if (value === 0 || value >= 1) {
    return `${formatNumber(value, 2)} /s`;
  }
  if (value * 60 >= 1) {
    return `${formatNumber(value * 60, 1)} /min`;
  }
  return `${formatNumber(value * 3600, 1)} /h`;
}

function formatBytes(bytes) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = Number(bytes) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${formatNumber(value, unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatDuration(seconds) {
  const value = Number(seconds) || 0;
  if (value < 60) {
    return `${formatNumber(value, 1)} s`;
  }
  if (value < 3600) {
    return `${formatNumber(value / 60, 1)} min`;
  }
  return `${formatNumber(value / 3600, 1)} h`;
}

function formatTime(iso) {
  if (!iso) {
    return '–';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

function formatValue(value) {
  if (value === null || value === undefined || value === '') {
    return '–';
  }
  if (typeof value === 'object') {
    return JSON.stringify(value);
  }
  return String(value);
}

// Fills a <dl> with the fields of an object; nested objects get their own <dl>.
function fillFields(list, object) {
  list.replaceChildren();
  for (const [key, value] of Object.entries(object || {})) {
    list.append(make('dt', key));
    const cell = make('dd');
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const nested = make('dl', null, { class: 'fields' });
      fillFields(nested, value);
      cell.append(nested);
    } else {
      cell.textContent = formatValue(value);
    }
    list.append(cell);
  }
}

function makeRow(values) {
  const row = make('tr');
  for (const value of values) {
    row.append(value instanceof Node ? wrapCell(value) : make('td', formatValue(value)));
  }
  return row;
}

function wrapCell(node) {
  const cell = make('td');
  cell.append(node);
  return cell;
}

// Status

function describeDestination(destination) {
  if (!destination) {
    return '–';
  }
  const parts = [destination.StowUrl || destination.ServiceUrl];
  if (destination.ApiVersion) {
    parts.push(`API ${destination.ApiVersion}`);
  }
  if (destination.Partition) {
    parts.push(`partition ${destination.Partition}`);
  }
  return parts.join(', ');
}

function describeDeletes(deletes) {
  if (!deletes) {
    return '–';
  }
  if (!deletes.Enabled) {
    return 'off (MirrorDeletes is false)';
  }
  let text = `${formatNumber(deletes.Pending)} pending, ${formatNumber(deletes.Done)} done`;
  if (deletes.LastError) {
    text += `; last error: ${deletes.LastError}`;
  }
  return text;
}

function describeRollback(rollback) {
  if (!rollback) {
    return 'none';
  }
  let text = `${rollback.State} to snapshot ${rollback.Snapshot} (${formatTime(rollback.Time)}): ` +
    `${formatNumber(rollback.Deleted)} deleted, ${formatNumber(rollback.NotFound)} not found, ` +
    `${formatNumber(rollback.Failed)} failed, ${formatNumber(rollback.Remaining)} remaining of ` +
    `${formatNumber(rollback.Total)}`;
  if (rollback.Job) {
    text += `, job ${rollback.Job}`;
  }
  if (rollback.Message) {
    text += `; ${rollback.Message}`;
  }
  return text;
}

function describeLastError(error) {
  if (!error) {
    return 'none';
  }
  const status = error.StatusCode ? `HTTP ${error.StatusCode}: ` : '';
  return `${formatTime(error.Time)}: ${status}${error.Message}`;
}

function showStatus(status) {
  const badge = byId('state-badge');
  badge.dataset.state = status.State;
  badge.textContent = status.State;

  const counts = byId('counts-table').tBodies[0];
  counts.replaceChildren();
  let total = 0;
  for (const state of STATES) {
    const count = (status.Counts && status.Counts[state]) || 0;
    total += count;
    const row = makeRow([state, formatNumber(count)]);
    row.dataset.state = state;
    counts.append(row);
  }
  counts.append(makeRow(['Total', formatNumber(total)]));

  byId('status-state').textContent = status.State;
  byId('status-paused').textContent = status.Paused ? 'yes' : 'no';
  byId('status-pause-reason').textContent = status.PauseReason || '–';
  byId('status-destination').textContent = describeDestination(status.Destination);
  byId('status-oldest').textContent = status.OldestPendingAgeSeconds > 0
    ? `${formatDuration(status.OldestPendingAgeSeconds)} ago` : 'nothing pending';
  byId('status-conflicts').textContent = formatNumber(status.Conflicts);
  byId('status-deletes').textContent = describeDeletes(status.Deletes);
  byId('status-rollback').textContent = describeRollback(status.Rollback);
  byId('status-last-error').textContent = describeLastError(status.LastError);
  byId('status-database').textContent = describeDatabase(status.Database);
  showNodes(status);

  byId('pause-button').disabled = status.State === 'Paused';
}

function describeDatabase(database) {
  if (!database) {
    return '–';
  }
  if (!database.Connected) {
    return `${database.Type}, not connected: ${database.LastError}`;
  }
  return `${database.Type}, connected`;
}

// The nodes that share the outbox: one with SQLite, every Orthanc of a PostgreSQL outbox.
function showNodes(status) {
  byId('nodes-this').textContent = status.Node || '–';
  const follower = status.Follower || {};
  byId('nodes-follower').textContent = follower.Active
    ? 'It follows the change log.'
    : 'Another node follows the change log.';

  const rows = (status.Nodes || []).map((node) => {
    const row = makeRow([node.Name, formatNumber(node.Claimed), formatNumber(node.Sent),
      formatTime(node.LastSeen)]);
    row.dataset.node = node.Name;
    if (node.Name === status.Node) {
      row.classList.add('this-node');
    }
    return row;
  });
  byId('nodes-table').tBodies[0].replaceChildren(...rows);
}

// History chart and request tiles

const CHART = { width: 800, height: 260, left: 56, right: 56, top: 24, bottom: 32 };

function svg(tag, attributes, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    node.setAttribute(name, String(value));
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

// Rounds a maximum up to 1, 2 or 5 times a power of ten, so that axis labels stay readable.
function niceMaximum(value) {
  if (!(value > 0)) {
    return 1;
  }
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) {
      return step * power;
    }
  }
  return 10 * power;
}

// Returns [{time (ms), backlog, throughput (instances per second)}] from the samples. The
// throughput of a sample is its SentInstances minus the previous sample's, divided by the
// seconds between them. A drop of the cumulative count (Orthanc restarted) gives no point.
function toSeries(samples) {
  const points = [];
  let previous = null;
  for (const sample of samples) {
    const time = Date.parse(sample.Time);
    const counts = sample.Counts || {};
    const point = {
      time,
      backlog: (counts.Pending || 0) + (counts.Sending || 0),
      throughput: null,
    };
    if (previous !== null && time > previous.time && sample.SentInstances >= previous.sent) {
      point.throughput = (sample.SentInstances - previous.sent) / ((time - previous.time) / 1000);
    }
    points.push(point);
    previous = { time, sent: sample.SentInstances };
  }
  return points;
}

function drawHistory(history) {
  const chart = byId('history-chart');
  chart.replaceChildren();
  const points = toSeries(history.Samples || []);
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const end = points.length ? Math.max(Date.now(), points[points.length - 1].time) : Date.now();
  const start = end - HISTORY_SECONDS * 1000;
  const maxBacklog = niceMaximum(Math.max(0, ...points.map((p) => p.backlog)));
  const maxThroughput = niceMaximum(Math.max(0, ...points.map((p) => p.throughput || 0)));

  const x = (time) => CHART.left + ((time - start) / (end - start)) * plotWidth;
  const yBacklog = (value) => CHART.top + plotHeight - (value / maxBacklog) * plotHeight;
  const yThroughput = (value) => CHART.top + plotHeight - (value / maxThroughput) * plotHeight;

  for (let i = 0; i <= 4; i++) {
    const y = CHART.top + (plotHeight * i) / 4;
    chart.append(svg('line', { class: 'grid', x1: CHART.left, x2: CHART.left + plotWidth, y1: y, y2: y }));
    const fraction = 1 - i / 4;
    chart.append(svg('text', { x: CHART.left - 6, y: y + 4, 'text-anchor': 'end' },
                     formatNumber(maxBacklog * fraction, 2)));
    chart.append(svg('text', { x: CHART.left + plotWidth + 6, y: y + 4 },
                     formatNumber(maxThroughput * fraction, 2)));
  }
  // The axis titles start and end at the plot's corners, where the margins cannot cut them.
  chart.append(svg('text', { class: 'axis-title', x: CHART.left, y: CHART.top - 8 },
                   'instances'));
  chart.append(svg('text', {
    class: 'axis-title', x: CHART.left + plotWidth, y: CHART.top - 8, 'text-anchor': 'end',
  }, 'per s'));
  for (const minutes of [60, 45, 30, 15, 0]) {
    const time = end - minutes * 60000;
    chart.append(svg('text', { x: x(time), y: CHART.height - 10, 'text-anchor': 'middle' },
                     minutes === 0 ? 'now' : `-${minutes} min`));
  }
  chart.append(svg('line', {
    class: 'axis', x1: CHART.left, x2: CHART.left + plotWidth,
    y1: CHART.top + plotHeight, y2: CHART.top + plotHeight,
  }));

  const visible = points.filter((p) => p.time >= start);
  const backlogLine = visible.map((p) => `${x(p.time).toFixed(1)},${yBacklog(p.backlog).toFixed(1)}`);
  const throughputLine = visible.filter((p) => p.throughput !== null)
    .map((p) => `${x(p.time).toFixed(1)},${yThroughput(p.throughput).toFixed(1)}`);
  chart.append(svg('polyline', { class: 'backlog', id: 'history-backlog', points: backlogLine.join(' ') }));
  chart.append(svg('polyline', {
    class: 'throughput', id: 'history-throughput', points: throughputLine.join(' '),
  }));
  chart.dataset.samples = String(visible.length);

  if (visible.length === 0) {
    showMessage('history-message', `No sample yet: the plugin records one every ` +
                `${history.IntervalSeconds} s.`, false);
  } else {
    hideMessage('history-message');
  }
}

function describeErrors(window) {
  const byStatus = Object.entries(window.ErrorsByStatus || {})
    .sort((a, b) => Number(a[0]) - Number(b[0]))
    .map(([status, count]) => `${status === '0' ? 'no response' : status}: ${count}`);
  const rate = `${formatNumber(window.ErrorRate * 100, 1)} %`;
  return byStatus.length ? `${rate} (${byStatus.join(', ')})` : rate;
}

function showTiles(requests) {
  for (const name of ['Last5Minutes', 'Last60Minutes']) {
    const window = requests[name];
    if (!window) {
      continue;
    }
    byId('tile-rate').querySelector(`[data-window="${name}"]`).textContent =
      `${formatRate(window.RequestsPerSecond)} (${formatCount(window.Requests, 'request')})`;
    byId('tile-latency').querySelector(`[data-window="${name}"]`).textContent =
      window.Requests > 0 ? `${formatNumber(window.P95LatencyMs)} ms` : 'no request';
    byId('tile-errors').querySelector(`[data-window="${name}"]`).textContent =
      describeErrors(window);
  }
}

// Failed instances

let failedNext = null;

function makeFailedRow(item) {
  const button = make('button', 'Retry', { type: 'button', class: 'retry-item', 'data-id': item.ID });
  button.addEventListener('click', () => runAction(button, 'failed-message', async () => {
    const answer = await postJson('../retry', { Resources: [item.ID] });
    showMessage('failed-message', `${item.SOPInstanceUID}: ` +
                `${formatCount(answer.Requeued, 'instance')} queued again.`, false);
    await loadFailed(true);
    await refreshStatus();
  }));
  const row = makeRow([item.SOPInstanceUID, item.FailureReason, item.StatusCode, item.Message,
                       item.Attempts, formatTime(item.UpdatedAt), button]);
  row.dataset.id = item.ID;
  return row;
}

async function loadFailed(fromStart) {
  const body = byId('failed-table').tBodies[0];
  let path = `../instances?state=Failed&limit=${FAILED_PAGE_SIZE}`;
  if (fromStart) {
    failedNext = null;
  } else if (failedNext !== null) {
    path += `&since=${failedNext}`;
  }

  const page = await getJson(path);
  if (fromStart) {
    body.replaceChildren();
  }
  for (const item of page.Items) {
    body.append(makeFailedRow(item));
  }
  failedNext = page.Next;
  byId('failed-more').hidden = failedNext === null || failedNext === undefined;
  byId('failed-empty').hidden = body.rows.length > 0;
}

// Lookup

let lookedUp = null;

function showLookup(answer) {
  lookedUp = answer;
  byId('lookup-result').hidden = false;
  byId('lookup-level').textContent = answer.Level;
  byId('lookup-id').textContent = answer.ID;
  const badge = byId('lookup-badge');
  badge.dataset.summary = answer.Summary;
  badge.textContent = SUMMARY_TEXT[answer.Summary] || answer.Summary;

  const parts = STATES.filter((state) => answer.Counts[state] > 0)
    .map((state) => `${answer.Counts[state]} ${state}`);
  if (answer.NotQueued > 0) {
    parts.push(`${answer.NotQueued} not queued`);
  }
  byId('lookup-counts').textContent =
    `${formatCount(answer.Instances, 'instance')}, ${formatBytes(answer.Bytes)}` +
    (parts.length ? `: ${parts.join(', ')}` : '');
  byId('lookup-retry').hidden = !(answer.Counts.Failed > 0);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Polls the looked-up resource and its job until the job has ended and nothing is Pending or
// Sending. Returns the final state and the job's error, or null when another lookup replaced it.
async function pollLookup(id, jobId) {
  let jobError = '';
  let jobEnded = !jobId;
  for (let polls = 0; polls < MAX_POLLS; polls++) {
    if (!jobEnded) {
      const job = await getJson(`../../jobs/${encodeURIComponent(jobId)}`);
      if (job.State === 'Failure') {
        jobError = job.ErrorDescription || 'no description';
      }
      jobEnded = job.State === 'Success' || job.State === 'Failure';
    }
    const answer = await getJson(`../resources/${encodeURIComponent(id)}`);
    if (!lookedUp || lookedUp.ID !== answer.ID) {
      return null;  // another lookup replaced this one
    }
    showLookup(answer);
    if (jobEnded && (answer.Counts.Pending || 0) + (answer.Counts.Sending || 0) === 0) {
      return { answer, jobError };
    }
    await sleep(POLL_INTERVAL_MS);
  }
  throw new ApiError(`still in progress after ${MAX_POLLS * POLL_INTERVAL_MS / 1000} s; look it up ` +
                     'again later', 0);
}

async function lookUp() {
  const id = byId('lookup-input').value.trim();
  if (!id) {
    showMessage('lookup-message', 'Enter an Orthanc ID or a DICOM UID.', true);
    return;
  }
  byId('lookup-result').hidden = true;
  lookedUp = null;
  hideMessage('lookup-message');
  showLookup(await getJson(`../resources/${encodeURIComponent(id)}`));
}

async function mirrorLookedUp() {
  const id = lookedUp.ID;
  const job = await postJson('../sync', { Resources: [id] });
  showMessage('lookup-message', `Queued by job ${job.ID}; sending…`, false);
  const result = await pollLookup(id, job.ID);
  if (result) {
    const prefix = result.jobError ? `Job ${job.ID} failed: ${result.jobError}. ` : `Job ${job.ID} done: `;
    showMessage('lookup-message', prefix + (SUMMARY_TEXT[result.answer.Summary] || result.answer.Summary) +
                '.', Boolean(result.jobError) || result.answer.Summary === 'Failed');
  }
  await refreshStatus();
}

async function retryLookedUp() {
  const id = lookedUp.ID;
  const answer = await postJson('../retry', { Resources: [id] });
  const requeued = formatCount(answer.Requeued, 'instance');
  showMessage('lookup-message', `${requeued} queued again; sending…`, false);
  const result = await pollLookup(id, null);
  if (result) {
    showMessage('lookup-message', `${requeued} queued again: ` +
                `${SUMMARY_TEXT[result.answer.Summary] || result.answer.Summary}.`,
                result.answer.Summary === 'Failed');
  }
  await refreshStatus();
}

// Credentials and the preflight check

async function loadCredentials() {
  fillFields(byId('credentials-list'), await getJson('../credentials'));
}

async function runCheck() {
  showMessage('check-message', 'Running the check (the call to the service may take up to 30 s)…',
              false);
  const result = await postJson('../check', {});
  const body = byId('check-steps').tBodies[0];
  body.replaceChildren();
  for (const step of result.Steps || []) {
    const status = make('span', step.Status, { class: `step-${step.Status}` });
    const row = makeRow([step.Name, status, step.Details, step.Hint]);
    row.dataset.step = step.Name;
    body.append(row);
  }
  byId('check-steps').hidden = false;
  showMessage('check-message', result.Passed ? 'The check passed.' : 'The check failed: see the ' +
              'failed steps and their hints.', !result.Passed);
}

// Snapshots and rollback

let openSnapshot = null;

async function loadSnapshots() {
  const answer = await getJson('../snapshots');
  const body = byId('snapshots-table').tBodies[0];
  body.replaceChildren();
  // Newest first.
  const snapshots = (answer.Snapshots || []).slice().sort((a, b) => Number(b.ID) - Number(a.ID));
  for (const snapshot of snapshots) {
    const button = make('button', 'Open', { type: 'button', class: 'open-snapshot', 'data-id': snapshot.ID });
    button.addEventListener('click', () => runAction(button, 'snapshot-message',
                                                     () => showSnapshot(snapshot.ID)));
    const row = makeRow([snapshot.ID, formatTime(snapshot.Time), snapshot.Reason, snapshot.Label,
                         snapshot.Paused ? 'yes' : 'no', button]);
    row.dataset.id = snapshot.ID;
    body.append(row);
  }
  byId('snapshots-empty').hidden = snapshots.length > 0;
}

async function showSnapshot(id) {
  const snapshot = await getJson(`../snapshots/${encodeURIComponent(id)}`);
  openSnapshot = snapshot;
  byId('rollback-plan').hidden = true;
  hideMessage('rollback-message');
  byId('snapshot-detail-id').textContent = snapshot.ID;
  fillFields(byId('snapshot-detail-fields'), {
    Label: snapshot.Label,
    Reason: snapshot.Reason,
    Time: formatTime(snapshot.Time),
    Paused: snapshot.Paused ? 'yes' : 'no',
    Position: snapshot.Position,
    Counts: snapshot.Counts,
  });
  byId('snapshot-detail-settings').textContent = JSON.stringify(snapshot.Settings, null, 2);
  byId('snapshot-detail').hidden = false;
}

function fillTable(id, rows) {
  const body = byId(id).tBodies[0];
  body.replaceChildren(...rows.map(makeRow));
  byId(id).hidden = rows.length === 0;
}

async function showRollbackPlan() {
  const snapshotId = openSnapshot.ID;
  const plan = await postJson(`../snapshots/${encodeURIComponent(snapshotId)}/rollback`, {});
  if (!openSnapshot || openSnapshot.ID !== snapshotId) {
    return;
  }
  byId('rollback-plan-id').textContent = plan.Snapshot;
  byId('rollback-delete-instances').textContent = formatNumber(plan.Delete.Instances);
  byId('rollback-delete-bytes').textContent = formatBytes(plan.Delete.Bytes);
  byId('rollback-dropped').textContent = formatNumber(plan.DroppedPending.Instances);
  byId('rollback-in-flight').textContent = formatNumber(plan.InFlight.Instances);
  byId('rollback-kept').textContent = formatNumber(plan.AlreadyPresentKept);
  fillTable('rollback-destinations', plan.Delete.Destinations.map((share) => [
    share.ServiceUrl, share.ApiVersion, share.Partition, formatNumber(share.Instances),
    formatBytes(share.Bytes)]));
  fillTable('rollback-settings', (plan.SettingsDiff || []).map((change) => [
    change.Key, formatValue(change.Current), formatValue(change.Restored)]));
  fillTable('rollback-items', plan.Delete.FirstItems.map((item) => [
    item.SOPInstanceUID, item.StudyInstanceUID, formatBytes(item.Size)]));

  // The confirmation carries the Confirm value of the plan shown, never one typed by hand.
  const confirm = byId('rollback-confirm');
  confirm.dataset.confirm = plan.Confirm;
  confirm.textContent = `Roll back to snapshot ${plan.Snapshot}`;
  byId('rollback-plan').hidden = false;
  if (plan.SettingsError) {
    showMessage('rollback-message', plan.SettingsError, true);
  } else if (plan.InFlight.Message) {
    showMessage('rollback-message', plan.InFlight.Message, false);
  } else {
    hideMessage('rollback-message');
  }
}

async function confirmRollback() {
  const confirm = byId('rollback-confirm');
  const snapshotId = confirm.dataset.confirm;
  if (!snapshotId) {
    throw new ApiError('show the rollback plan first', 0);
  }
  const answer = await postJson(`../snapshots/${encodeURIComponent(snapshotId)}/rollback`,
                                { DryRun: false, Confirm: snapshotId });
  delete confirm.dataset.confirm;
  byId('rollback-plan').hidden = true;
  showMessage('rollback-message', `Rollback ${answer.Rollback} started as job ${answer.ID} ` +
              `(${answer.Path}). Safety snapshot: ${answer.SafetySnapshot.ID}.`, false);
  await loadSnapshots();
  await refreshStatus();
}

// Periodic refresh

async function refreshStatus() {
  const status = await getJson('../status');
  showStatus(status);
  const history = await getJson('../status/history');
  drawHistory(history);
  showTiles(history.Requests || {});
  byId('updated-at').textContent = new Date().toLocaleTimeString();
}

async function refreshAll() {
  try {
    await refreshStatus();
    hideMessage('header-message');
  } catch (error) {
    showMessage('header-message', `Cannot read the status: ${error.message}`, true);
  }
}

function bindButton(id, messageId, action) {
  const button = byId(id);
  button.addEventListener('click', () => runAction(button, messageId, action));
}

function start() {
  bindButton('refresh-button', 'header-message', async () => {
    await refreshStatus();
    await loadFailed(true);
    await loadCredentials();
    await loadSnapshots();
    hideMessage('header-message');
  });
  bindButton('pause-button', 'header-message', async () => {
    showStatus(await postJson('../pause', {}));
    showMessage('header-message', 'Sending is paused.', false);
  });
  bindButton('resume-button', 'header-message', async () => {
    showStatus(await postJson('../resume', {}));
    showMessage('header-message', 'Sending resumed.', false);
  });

  bindButton('retry-all-failed', 'failed-message', async () => {
    const answer = await postJson('../retry', { State: 'Failed' });
    showMessage('failed-message', `${formatCount(answer.Requeued, 'failed instance')} queued ` +
                'again.', false);
    await loadFailed(true);
    await refreshStatus();
  });
  bindButton('failed-reload', 'failed-message', async () => {
    hideMessage('failed-message');
    await loadFailed(true);
  });
  bindButton('failed-more', 'failed-message', () => loadFailed(false));

  byId('lookup-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runAction(byId('lookup-submit'), 'lookup-message', lookUp);
  });
  bindButton('lookup-sync', 'lookup-message', mirrorLookedUp);
  bindButton('lookup-retry', 'lookup-message', retryLookedUp);

  bindButton('check-button', 'check-message', runCheck);

  byId('snapshot-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runAction(byId('snapshot-take'), 'snapshot-message', async () => {
      const label = byId('snapshot-label').value.trim();
      const snapshot = await postJson('../snapshots', label ? { Label: label } : {});
      showMessage('snapshot-message', `Snapshot ${snapshot.ID} taken.`, false);
      byId('snapshot-label').value = '';
      await loadSnapshots();
    });
  });
  bindButton('rollback-plan-button', 'rollback-message', showRollbackPlan);
  bindButton('rollback-confirm', 'rollback-message', confirmRollback);

  refreshAll();
  for (const [load, messageId] of [[() => loadFailed(true), 'failed-message'],
                                   [loadCredentials, 'check-message'],
                                   [loadSnapshots, 'snapshot-message']]) {
    load().catch((error) => showMessage(messageId, error.message, true));
  }
  setInterval(refreshAll, REFRESH_INTERVAL_MS);
}

// index.html moves /azure-dicom/ui to /azure-dicom/ui/; nothing runs before that.
if (/(\/|\.html)$/.test(window.location.pathname)) {
  start();
}

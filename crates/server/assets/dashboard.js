// keel dashboard: progress bars, artifact upload with progress, live rollout progress.
// No inline script is allowed (Content-Security-Policy); values are written with textContent only.
'use strict';

function setBar(bar, counts) {
  const total = Number(counts.total) || 0;
  for (const kind of ['finished', 'error', 'running', 'canceled']) {
    const seg = bar.querySelector('.seg.' + kind);
    const n = Number(counts[kind]) || 0;
    if (seg) seg.style.width = total > 0 ? (100 * n / total) + '%' : '0';
  }
}

function initBars() {
  for (const bar of document.querySelectorAll('.bar[data-total]')) {
    setBar(bar, bar.dataset);
  }
}

function setBadge(container, status) {
  if (!container) return;
  let badge = container.querySelector('.badge');
  if (!badge) {
    badge = document.createElement('span');
    container.appendChild(badge);
  }
  badge.textContent = status;
  badge.dataset.status = status;
  badge.className = 'badge state-' + String(status).replace(/[^a-zA-Z0-9_]/g, '');
}

function initUpload() {
  const form = document.getElementById('upload-form');
  if (!form) return;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const file = document.getElementById('upload-file').files[0];
    const module = document.getElementById('upload-module').value;
    const status = document.getElementById('upload-status');
    const progress = document.getElementById('upload-progress');
    if (!file || !module) return;
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/ui/software/modules/' + encodeURIComponent(module) +
      '/artifacts?filename=' + encodeURIComponent(file.name));
    xhr.setRequestHeader('X-CSRF-Token', form.querySelector('input[name=csrf]').value);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    progress.hidden = false;
    progress.value = 0;
    status.className = 'status';
    status.textContent = 'Uploading ' + file.name + ' …';
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) {
        progress.value = Math.round(100 * e.loaded / e.total);
        status.textContent = 'Uploading ' + file.name + ': ' + progress.value + '% (' + e.loaded + ' of ' + e.total + ' bytes)';
      }
    });
    xhr.addEventListener('load', () => {
      let reply = {};
      try { reply = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201) {
        progress.value = 100;
        status.textContent = 'Uploaded ' + reply.filename + ' (' + reply.size + ' bytes, sha256 ' + reply.sha256 + ')';
        status.dataset.done = 'ok';
        setTimeout(() => window.location.reload(), 1200);
      } else {
        status.className = 'status error';
        status.textContent = 'Upload failed: ' + xhr.status + ' ' + (reply.message || xhr.statusText);
        status.dataset.done = 'error';
      }
    });
    xhr.addEventListener('error', () => {
      status.className = 'status error';
      status.textContent = 'Upload failed: network error';
      status.dataset.done = 'error';
    });
    xhr.send(file);
  });
}

function failedLinks(cell, failed) {
  cell.textContent = '';
  for (const id of failed || []) {
    const a = document.createElement('a');
    a.className = 'failed-device';
    a.href = '/ui/devices/' + encodeURIComponent(id);
    a.textContent = id;
    cell.appendChild(a);
    cell.appendChild(document.createTextNode(' '));
  }
}

function applyProgress(section, p) {
  section.dataset.status = p.status;
  setBadge(document.getElementById('rollout-status'), p.status);
  document.getElementById('rollout-reason').textContent = p.statusReason || '';
  const total = document.getElementById('bar-total');
  if (total) setBar(total, p.counts);
  const totalText = document.getElementById('bar-total-text');
  if (totalText) totalText.textContent = p.text;
  for (const g of p.groups) {
    const row = document.querySelector('tr[data-group-id="' + g.id + '"]');
    if (!row) continue;
    setBadge(row.querySelector('.group-status'), g.status);
    const bar = document.getElementById('bar-group-' + g.id);
    if (bar) setBar(bar, g.counts);
    const text = document.getElementById('bar-group-' + g.id + '-text');
    if (text) text.textContent = g.text;
    failedLinks(row.querySelector('td.failed'), g.failed);
  }
  for (const form of document.querySelectorAll('[data-show-when]')) {
    form.hidden = !form.dataset.showWhen.split(' ').includes(p.status);
  }
  const live = document.getElementById('live');
  if (live) live.textContent = 'live · updated ' + new Date().toLocaleTimeString();
}

function initRolloutLive() {
  const section = document.getElementById('rollout');
  if (!section || !section.dataset.progressUrl) return;
  const url = section.dataset.progressUrl;
  let timer = null;
  async function poll() {
    try {
      const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (response.ok && (response.headers.get('content-type') || '').includes('json')) {
        const p = await response.json();
        applyProgress(section, p);
        if (p.status === 'finished' || p.status === 'canceled') {
          clearInterval(timer);
          const live = document.getElementById('live');
          if (live) live.textContent = 'final · ' + new Date().toLocaleTimeString();
        }
      }
    } catch (_) { /* server restarting: try again next tick */ }
  }
  timer = setInterval(poll, 1000);
  poll();
}

document.addEventListener('DOMContentLoaded', () => {
  initBars();
  initUpload();
  initRolloutLive();
});

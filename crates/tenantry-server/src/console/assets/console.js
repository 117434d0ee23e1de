/* tenantry console script. It only enhances: every page works without it, except the live updates.
 * - relative times stay current;
 * - a job's timeline follows the job live (Server-Sent Events, with a 1.5 s polling fallback) and Retry /
 *   Roll back act in place; Approve and Reject stay plain form posts that come back to the job's page;
 * - a rollout's waves, counts and failed tenants follow it live the same way; its buttons stay plain form posts;
 * - the wizard moves between its seven steps here, checks the slug rule as you type, counts the description,
 *   adds, removes and checks data source rows, fills each tier's numbers, the modules the tier allows and the
 *   Review (price, quotas, approval notice) from the plans the page embeds, posts JSON to the API and opens the
 *   progress drawer.
 * The job markup built here mirrors console/jobs.rs (`job_live`), so a page looks the same before and after. The
 * approval and checks blocks are the exception: only the server knows when a request lapses, who may decide it
 * and what the checks found, so they are taken from the job's page as the server renders it. */
(function () {
  'use strict';

  var SLUG_RULE = /^[a-z][a-z0-9-]{2,39}$/;
  var EMAIL_SHAPE = /^[^\s@]+@[^\s@.][^\s@]*\.[^\s@]+$/;
  var POLL_MS = 1500;
  var TERMINAL = ['complete', 'failed', 'rolled_back', 'cancelled'];

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : '';
  }

  /* Builds an element; text children become text nodes, so data is never parsed as HTML. */
  function h(tag, attributes) {
    var element = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      var value = attributes[name];
      if (value === false || value === null || value === undefined) return;
      element.setAttribute(name, value === true ? '' : String(value));
    });
    for (var index = 2; index < arguments.length; index++) {
      [].concat(arguments[index]).forEach(function (child) {
        if (child === null || child === undefined || child === false) return;
        element.append(child instanceof Node ? child : document.createTextNode(String(child)));
      });
    }
    return element;
  }

  /* ---------- times (the same rules as layout.rs) ---------- */

  function relativeTime(millis, now) {
    var delta = Math.trunc((now - millis) / 1000);
    var magnitude = Math.abs(delta);
    if (magnitude < 5) return delta >= 0 ? 'just now' : 'in a moment';
    var amount;
    if (magnitude < 60) amount = magnitude + ' s';
    else if (magnitude < 3600) amount = Math.floor(magnitude / 60) + ' min';
    else if (magnitude < 86400) amount = Math.floor(magnitude / 3600) + ' h';
    else amount = Math.floor(magnitude / 86400) + ' d';
    return delta >= 0 ? amount + ' ago' : 'in ' + amount;
  }

  function exactTime(millis) {
    return new Date(millis).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  }

  function duration(millis) {
    millis = Math.max(0, millis);
    if (millis < 1000) return Math.round(millis) + ' ms';
    if (millis < 60000) return (millis / 1000).toFixed(1) + ' s';
    var seconds = Math.floor((millis % 60000) / 1000);
    return Math.floor(millis / 60000) + ' min ' + String(seconds).padStart(2, '0') + ' s';
  }

  function timeAgo(rfc3339) {
    var millis = rfc3339 ? Date.parse(rfc3339) : NaN;
    if (isNaN(millis)) return h('span', { class: 'muted' }, '\u2014');
    return h('time', { datetime: rfc3339, title: exactTime(millis), 'data-relative': true },
      relativeTime(millis, Date.now()));
  }

  function refreshTimes(root) {
    root.querySelectorAll('time[data-relative]').forEach(function (element) {
      var millis = Date.parse(element.getAttribute('datetime'));
      if (!isNaN(millis)) element.textContent = relativeTime(millis, Date.now());
    });
  }

  /* ---------- a job, live ---------- */

  function jobPath(jobId) {
    return '/platform/jobs/' + encodeURIComponent(jobId);
  }

  function pill(status) {
    return h('span', { class: 'pill pill-' + status }, status.replace(/_/g, ' '));
  }

  function phaseDuration(phase) {
    if (!phase.started_at) return '';
    var started = Date.parse(phase.started_at);
    var finished = phase.finished_at ? Date.parse(phase.finished_at) : Date.now();
    return duration(finished - started);
  }

  function failedPhase(job) {
    var failed = job.phases.find(function (phase) { return phase.status === 'failed'; });
    return failed ? failed.name : job.phase_name;
  }

  function clock(rfc3339) {
    var parts = String(rfc3339).split('T');
    return parts.length === 2 ? parts[1].replace(/Z$/, '') : rfc3339;
  }

  /* The empty structure of a job component, as job_live renders it. */
  function jobSkeleton(jobId, canOperate, errorHelp) {
    return h('section', {
      class: 'job-live', 'data-job-id': jobId, 'data-status': 'pending',
      'data-can-operate': canOperate ? 'true' : 'false', 'data-error-help': errorHelp || '{}'
    },
      h('div', { class: 'job-head' }, h('span', { class: 'job-status' }, pill('pending')), h('span', { class: 'job-phase' })),
      h('div', { class: 'job-progress' },
        h('progress', { max: '100', value: '0', 'aria-label': 'Progress' }, '0%'),
        h('span', { class: 'job-percent' }, '0%')),
      h('dl', { class: 'job-times' }),
      h('div', { class: 'job-approval', hidden: true }),
      h('div', { class: 'job-outcome', hidden: true }),
      h('div', { class: 'job-failure', role: 'alert', hidden: true }),
      h('ol', { class: 'timeline', 'aria-label': 'Phases' }),
      h('div', { class: 'job-checks', hidden: true }),
      h('h3', { class: 'log-title' }, 'Log'),
      h('ol', { class: 'job-log', 'aria-label': 'Log' }, h('li', { class: 'log-empty' }, 'No log lines yet.')));
  }

  function JobLive(section, options) {
    this.section = section;
    this.jobId = section.getAttribute('data-job-id');
    this.canOperate = section.getAttribute('data-can-operate') === 'true';
    try {
      this.errorHelp = JSON.parse(section.getAttribute('data-error-help') || '{}');
    } catch (error) {
      this.errorHelp = {};
    }
    this.onTerminal = (options && options.onTerminal) || function () {};
    this.job = null;
    this.source = null;
    this.pollTimer = null;
    this.tickTimer = null;
    this.inFlight = false;
    this.again = false;
    this.stopped = true;
    this.failureKey = undefined; // nothing rendered by the script yet
    // The server-rendered parts (approval, checks) on the page are those of this status.
    this.serverPartsStatus = section.getAttribute('data-status');
    this.logCount = section.querySelectorAll('.job-log .log-line').length;
    section.addEventListener('submit', this.onAction.bind(this));
  }

  // Refreshes `live` on every event of a job's stream; while the stream is down (or refused), polls instead
  // (EventSource reconnects by itself). `live` has refresh, startPolling, stopPolling and a `source` slot.
  function followJobEvents(live, jobId) {
    if (!('EventSource' in window)) {
      live.startPolling();
      return;
    }
    var source = new EventSource(jobPath(jobId) + '/events');
    live.source = source;
    var refresh = function () { live.refresh(); };
    source.addEventListener('phase', refresh);
    source.addEventListener('log', refresh);
    source.addEventListener('done', function () {
      source.close();
      live.source = null;
      live.refresh();
    });
    source.addEventListener('open', function () { live.stopPolling(); });
    source.addEventListener('error', function () {
      if (source.readyState === EventSource.CLOSED) live.source = null;
      live.startPolling();
    });
  }

  JobLive.prototype.start = function () {
    var live = this;
    live.stop();
    live.stopped = false;
    live.refresh();
    followJobEvents(live, live.jobId);
    live.tickTimer = setInterval(function () { live.tickDurations(); }, 1000);
  };

  JobLive.prototype.startPolling = function () {
    var live = this;
    if (live.pollTimer || live.stopped) return;
    live.pollTimer = setInterval(function () { live.refresh(); }, POLL_MS);
  };

  JobLive.prototype.stopPolling = function () {
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  };

  JobLive.prototype.stop = function () {
    this.stopped = true;
    if (this.source) this.source.close();
    this.source = null;
    this.stopPolling();
    clearInterval(this.tickTimer);
    this.tickTimer = null;
  };

  JobLive.prototype.refresh = function () {
    var live = this;
    if (live.inFlight) {
      live.again = true;
      return;
    }
    live.inFlight = true;
    fetch(jobPath(live.jobId), { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) { if (job) live.update(job); })
      .catch(function () { /* the next event or poll tries again */ })
      .then(function () {
        live.inFlight = false;
        if (live.again) {
          live.again = false;
          live.refresh();
        }
      });
  };

  JobLive.prototype.update = function (job) {
    var section = this.section;
    this.job = job;
    section.setAttribute('data-status', job.status);
    var terminal = TERMINAL.indexOf(job.status) >= 0;

    section.querySelector('.job-status').replaceChildren(pill(job.status));
    var phaseText = [];
    if (job.total_phases > 0) {
      phaseText.push('Phase ' + job.current_phase + ' of ' + job.total_phases);
      if (job.phase_name) phaseText.push(' \u00b7 ', h('code', {}, job.phase_name));
    }
    section.querySelector('.job-phase').replaceChildren.apply(section.querySelector('.job-phase'), phaseText);

    var progress = section.querySelector('progress');
    progress.value = job.progress_percentage;
    progress.textContent = job.progress_percentage + '%';
    section.querySelector('.job-percent').textContent = job.progress_percentage + '%';

    section.querySelector('.job-times').replaceChildren(
      h('div', {}, h('dt', {}, 'Started'), h('dd', { class: 'job-started' }, timeAgo(job.started_at))),
      terminal
        ? h('div', {}, h('dt', {}, 'Finished'), h('dd', { class: 'job-eta' }, timeAgo(job.finished_at)))
        : h('div', {}, h('dt', {}, 'Estimated completion'), h('dd', { class: 'job-eta' }, timeAgo(job.estimated_completion))));

    this.renderApproval(job);
    this.renderOutcome(job);
    this.renderFailure(job);
    this.renderTimeline(job);
    this.renderLog(job);
    this.syncServerParts(job);

    if (terminal && !this.stopped) {
      this.stop();
      this.onTerminal(job);
    }
  };

  /* A job that no longer waits has no approval block; one that waits gets it from the server (syncServerParts). */
  JobLive.prototype.renderApproval = function (job) {
    var approval = this.section.querySelector('.job-approval');
    if (approval && job.status !== 'awaiting_approval' && !approval.hidden) {
      approval.hidden = true;
      approval.replaceChildren();
    }
  };

  /* When the job starts waiting for approval or ends, take the approval and checks blocks from its page as the
   * server renders them. Once per status, so a reason being typed into the approval form is never clobbered. */
  JobLive.prototype.syncServerParts = function (job) {
    var live = this;
    if (job.status === live.serverPartsStatus) return;
    live.serverPartsStatus = job.status;
    if (job.status !== 'awaiting_approval' && TERMINAL.indexOf(job.status) < 0) return;
    fetch(jobPath(live.jobId), { headers: { Accept: 'text/html' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null || live.serverPartsStatus !== job.status) return;
        // A parsed document runs no scripts; only the two blocks are taken from it.
        var page = new DOMParser().parseFromString(html, 'text/html');
        ['.job-approval', '.job-checks'].forEach(function (selector) {
          var fresh = page.querySelector('.job-live ' + selector);
          var current = live.section.querySelector(selector);
          if (fresh && current) current.replaceWith(document.importNode(fresh, true));
        });
      })
      .catch(function () { /* the blocks stay as they were; the page itself has them */ });
  };

  JobLive.prototype.renderOutcome = function (job) {
    var outcome = this.section.querySelector('.job-outcome');
    if (job.status !== 'complete') {
      outcome.hidden = true;
      outcome.replaceChildren();
      return;
    }
    var dryRun = job.phases.some(function (phase) { return phase.name === 'dry_run'; });
    var message;
    if (dryRun) message = ['Dry run complete: nothing was created. The log lists what would be.'];
    else if (job.kind === 'provision') {
      message = ['Tenant ', h('a', { href: '/platform/tenants/' + encodeURIComponent(job.tenant_slug) }, job.tenant_slug), ' is ready.'];
    } else message = ['Done.'];
    outcome.replaceChildren(h('p', { class: 'outcome-ok' }, message));
    outcome.hidden = false;
  };

  JobLive.prototype.renderFailure = function (job) {
    var failure = this.section.querySelector('.job-failure');
    var failed = job.status === 'failed' || job.status === 'rolled_back';
    // A cancelled job with an error was rejected, or its approval lapsed: say so as for a failure.
    var stopped = failed || (job.status === 'cancelled' && !!job.error_code);
    var key = stopped ? [job.status, job.error_code, job.error_message, failedPhase(job)].join('|') : null;
    if (key === this.failureKey) return; // unchanged: keep the buttons (and the focus on them)
    this.failureKey = key;
    if (!stopped) {
      failure.hidden = true;
      failure.replaceChildren();
      return;
    }
    var help = this.errorHelp[job.error_code] || null;
    var phase = failedPhase(job);
    var children = [failed
      ? h('h3', {}, 'Failed', phase ? [' at ', h('code', {}, phase)] : [])
      : h('h3', {}, 'Cancelled')];
    if (job.error_code) {
      children.push(h('p', { class: 'failure-code' }, h('code', { class: 'error-code' }, job.error_code),
        help ? ' \u2014 ' + help[0] : ''));
    }
    if (job.error_message) children.push(h('p', { class: 'failure-message' }, job.error_message));
    if (help) children.push(h('p', { class: 'failure-remedy' }, h('strong', {}, 'What to do: '), help[1]));
    if (job.status === 'rolled_back') children.push(h('p', { class: 'muted' }, 'Everything the job had applied was undone.'));
    if (failed && this.canOperate) {
      var actions = h('div', { class: 'job-actions' },
        actionForm(job.job_id, 'retry', h('button', { class: 'primary', type: 'submit' }, 'Retry')));
      if (job.status === 'failed') {
        actions.append(actionForm(job.job_id, 'rollback', h('button', { class: 'danger', type: 'submit' }, 'Roll back')));
      }
      children.push(actions);
    }
    failure.replaceChildren.apply(failure, children);
    failure.hidden = false;
  };

  function actionForm(jobId, action, button) {
    return h('form', { method: 'post', action: jobPath(jobId) + '/' + action, 'data-job-action': action },
      h('input', { type: 'hidden', name: 'csrf_token', value: csrfToken() }), button);
  }

  JobLive.prototype.renderTimeline = function (job) {
    var timeline = this.section.querySelector('.timeline');
    var items = timeline.children;
    if (items.length !== job.phases.length) {
      timeline.replaceChildren.apply(timeline, job.phases.map(function () {
        return h('li', { class: 'phase' }, h('span', { class: 'phase-dot', 'aria-hidden': 'true' }),
          h('span', { class: 'phase-name' }), h('span', { class: 'phase-status' }), h('span', { class: 'phase-duration' }));
      }));
    }
    // Patch in place: the rows keep their size, so nothing below them moves.
    var stoppedAt = job.status === 'failed' || job.status === 'rolled_back' ? failedPhase(job) : null;
    job.phases.forEach(function (phase, index) {
      var item = items[index];
      item.className = 'phase phase-' + phase.status + (phase.name === stoppedAt ? ' failed-here' : '');
      item.querySelector('.phase-name').textContent = phase.name;
      item.querySelector('.phase-status').textContent = phase.status;
      item.querySelector('.phase-duration').textContent = phaseDuration(phase);
    });
  };

  JobLive.prototype.tickDurations = function () {
    var job = this.job;
    if (!job) return;
    var items = this.section.querySelectorAll('.timeline > li');
    job.phases.forEach(function (phase, index) {
      if ((phase.status === 'running' || phase.status === 'undoing') && items[index]) {
        items[index].querySelector('.phase-duration').textContent = phaseDuration(phase);
      }
    });
  };

  JobLive.prototype.renderLog = function (job) {
    var log = this.section.querySelector('.job-log');
    if (job.logs.length < this.logCount) {
      log.replaceChildren();
      this.logCount = 0;
    }
    if (job.logs.length === this.logCount) {
      if (job.logs.length === 0 && !log.firstChild) log.append(h('li', { class: 'log-empty' }, 'No log lines yet.'));
      return;
    }
    var empty = log.querySelector('.log-empty');
    if (empty) empty.remove();
    // Follow the newest line only if the reader was already at the bottom.
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    job.logs.slice(this.logCount).forEach(function (line) {
      log.append(h('li', { class: 'log-line level-' + line.level },
        h('time', { datetime: line.at, title: line.at }, clock(line.at)),
        h('span', { class: 'log-phase' }, line.phase || ''),
        h('span', { class: 'log-message' }, line.message)));
    });
    this.logCount = job.logs.length;
    if (atBottom) log.scrollTop = log.scrollHeight;
  };

  /* Retry and Roll back: post to the API with the CSRF header, then follow the job again. */
  JobLive.prototype.onAction = function (event) {
    var form = event.target;
    var action = form.getAttribute('data-job-action');
    if (!action) return;
    event.preventDefault();
    var live = this;
    var button = form.querySelector('button');
    if (button) button.disabled = true;
    fetch(form.getAttribute('action'), {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRF-Token': csrfToken() }
    }).then(function (response) {
      if (response.status === 202) {
        live.failureKey = undefined;
        live.start();
        return null;
      }
      return response.json().catch(function () { return {}; }).then(function (problem) {
        if (button) button.disabled = false;
        var message = (problem.error_code ? problem.error_code + ': ' : '') + (problem.detail || 'the request failed');
        var existing = form.parentNode.querySelector('.action-error');
        if (existing) existing.remove();
        form.parentNode.append(h('p', { class: 'action-error', role: 'alert' }, message));
        return null;
      });
    }).catch(function () {
      if (button) button.disabled = false;
    });
  };

  /* ---------- a rollout, live ---------- */

  /* The rollout page (console/rollouts.rs, `rollout_live`) patched in place from GET /platform/rollouts/{id}
   * (JSON, with its failed tenants) on every event of the rollout's job stream, or every 1.5 s while the stream
   * is down. The texts and the rules for the buttons are those of rollouts.rs. */

  function rolloutPath(rolloutId) {
    return '/platform/rollouts/' + encodeURIComponent(rolloutId);
  }

  function waveName(wave) {
    return wave === 0 ? 'Canary' : 'Wave ' + wave;
  }

  function waveSettled(wave) {
    return wave.applied + wave.skipped + wave.failed;
  }

  function waveTotal(wave) {
    return wave.pending + wave.running + wave.applied + wave.skipped + wave.failed;
  }

  function waveCountsText(wave) {
    var text = waveSettled(wave) + '/' + waveTotal(wave) + ' settled \u00b7 ' + wave.applied + ' applied';
    [[wave.skipped, 'skipped'], [wave.failed, 'failed'], [wave.running, 'running'], [wave.pending, 'pending']]
      .forEach(function (count) {
        if (count[0] > 0) text += ' \u00b7 ' + count[0] + ' ' + count[1];
      });
    return text;
  }

  /* What an admin may do now: the same rules as rollouts.rs (`actions`). */
  function rolloutActions(status, control) {
    var over = !control || control === 'aborted' || ['complete', 'cancelled', 'rolled_back'].indexOf(status) >= 0;
    if (over) return { pause: false, resume: false, retry: false, abort: false };
    return {
      pause: control === 'run' && (status === 'pending' || status === 'in_progress'),
      resume: control === 'paused' && status !== 'failed',
      retry: status === 'failed',
      abort: true
    };
  }

  function setBar(progress, settled, total) {
    progress.max = Math.max(total, 1);
    progress.value = settled;
    progress.textContent = settled + '/' + total;
  }

  function RolloutLive(section) {
    this.section = section;
    this.rolloutId = section.getAttribute('data-rollout-id');
    this.failedShown = Number(section.getAttribute('data-failed-shown')) || 100;
    try {
      this.errorHelp = JSON.parse(section.getAttribute('data-error-help') || '{}');
    } catch (error) {
      this.errorHelp = {};
    }
    this.source = null;
    this.pollTimer = null;
    this.inFlight = false;
    this.again = false;
    this.stopped = true;
    this.failureKey = undefined; // nothing rendered by the script yet
  }

  RolloutLive.prototype.start = function () {
    var live = this;
    live.stopped = false;
    live.refresh();
    // The rollout is a job with the same id: each progress step it records is an event of the job's stream.
    followJobEvents(live, live.rolloutId);
  };

  RolloutLive.prototype.startPolling = JobLive.prototype.startPolling;
  RolloutLive.prototype.stopPolling = JobLive.prototype.stopPolling;

  RolloutLive.prototype.stop = function () {
    this.stopped = true;
    if (this.source) this.source.close();
    this.source = null;
    this.stopPolling();
  };

  RolloutLive.prototype.refresh = function () {
    var live = this;
    if (live.inFlight) {
      live.again = true;
      return;
    }
    live.inFlight = true;
    var url = rolloutPath(live.rolloutId) + '?status=failed&limit=' + live.failedShown;
    fetch(url, { headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (rollout) { if (rollout) live.update(rollout); })
      .catch(function () { /* the next event or poll tries again */ })
      .then(function () {
        live.inFlight = false;
        if (live.again) {
          live.again = false;
          live.refresh();
        }
      });
  };

  RolloutLive.prototype.update = function (rollout) {
    var section = this.section;
    section.setAttribute('data-status', rollout.status);
    section.setAttribute('data-control', rollout.control);
    section.querySelector('.rollout-status').replaceChildren(pill(rollout.status));
    section.querySelector('.rollout-control').replaceChildren.apply(section.querySelector('.rollout-control'),
      rollout.control ? ['control ', pill(rollout.control)] : []);

    var settled = 0;
    var total = 0;
    rollout.waves.forEach(function (wave) {
      settled += waveSettled(wave);
      total += waveTotal(wave);
    });
    setBar(section.querySelector('.rollout-progress'), settled, total);
    section.querySelector('.rollout-percent').textContent = (total ? Math.floor(settled * 100 / total) : 0) + '%';
    section.querySelectorAll('[data-count]').forEach(function (cell) {
      cell.textContent = String(rollout.counts[cell.getAttribute('data-count')] || 0);
    });

    this.renderWaves(rollout);
    this.renderOutcome(rollout);
    this.renderFailure(rollout);
    this.renderFailed(rollout);
    var allowed = rolloutActions(rollout.status, rollout.control);
    section.querySelectorAll('form[data-rollout-action]').forEach(function (form) {
      form.hidden = !allowed[form.getAttribute('data-rollout-action')];
    });

    if (TERMINAL.indexOf(rollout.status) >= 0 && !this.stopped) this.stop();
  };

  RolloutLive.prototype.renderWaves = function (rollout) {
    var list = this.section.querySelector('.waves');
    if (!rollout.waves.length) return; // the server's "not listed yet" line stays
    var items = list.querySelectorAll('li.wave');
    if (items.length !== rollout.waves.length) {
      list.replaceChildren.apply(list, rollout.waves.map(function (wave) {
        var name = waveName(wave.wave);
        return h('li', { class: 'wave', 'data-wave': wave.wave },
          h('span', { class: 'wave-name' }, name),
          h('progress', { max: '1', value: '0', 'aria-label': name + ' progress' }),
          h('span', { class: 'wave-counts' }));
      }));
      items = list.querySelectorAll('li.wave');
    }
    // Patch in place: the rows keep their size, so nothing below them moves.
    rollout.waves.forEach(function (wave, index) {
      var item = items[index];
      item.setAttribute('data-wave', wave.wave);
      item.querySelector('.wave-name').textContent = waveName(wave.wave);
      setBar(item.querySelector('progress'), waveSettled(wave), waveTotal(wave));
      item.querySelector('.wave-counts').textContent = waveCountsText(wave);
    });
  };

  RolloutLive.prototype.renderOutcome = function (rollout) {
    // The details below the panel say when the rollout ended, once it has.
    var finished = document.querySelector('[data-rollout-finished]');
    if (finished && rollout.finished_at) {
      finished.replaceChildren(timeAgo(new Date(rollout.finished_at).toISOString()));
    }
    var outcome = this.section.querySelector('.job-outcome');
    if (rollout.status !== 'complete') {
      outcome.hidden = true;
      outcome.replaceChildren();
      return;
    }
    outcome.replaceChildren(h('p', { class: 'outcome-ok' },
      'Complete: every tenant to migrate is at version ' + rollout.target_version + '.'));
    outcome.hidden = false;
  };

  RolloutLive.prototype.renderFailure = function (rollout) {
    var failure = this.section.querySelector('.job-failure');
    var stopped = rollout.status === 'failed' || rollout.status === 'rolled_back' ||
      (rollout.status === 'cancelled' && !!rollout.error_code);
    var key = stopped ? [rollout.status, rollout.error_code, rollout.error_message].join('|') : null;
    if (key === this.failureKey) return;
    this.failureKey = key;
    if (!stopped) {
      failure.hidden = true;
      failure.replaceChildren();
      return;
    }
    var help = this.errorHelp[rollout.error_code] || null;
    var children = [h('h3', {}, rollout.status === 'cancelled' ? 'Aborted' : 'Stopped')];
    if (rollout.error_code) {
      children.push(h('p', { class: 'failure-code' }, h('code', { class: 'error-code' }, rollout.error_code),
        help ? ' \u2014 ' + help[0] : ''));
    }
    if (rollout.error_message) children.push(h('p', { class: 'failure-message' }, rollout.error_message));
    if (help) children.push(h('p', { class: 'failure-remedy' }, h('strong', {}, 'What to do: '), help[1]));
    failure.replaceChildren.apply(failure, children);
    failure.hidden = false;
  };

  RolloutLive.prototype.renderFailed = function (rollout) {
    var block = this.section.querySelector('.rollout-failed');
    var nFailed = rollout.counts.failed || 0;
    block.hidden = nFailed === 0;
    block.querySelector('.failed-count').textContent = String(nFailed);
    block.querySelector('.failed-more').hidden = nFailed <= this.failedShown;
    var body = block.querySelector('tbody');
    body.replaceChildren.apply(body, rollout.tenants.map(function (tenant) {
      return h('tr', {},
        h('td', {}, h('a', { href: '/platform/tenants/' + encodeURIComponent(tenant.tenant_slug) }, tenant.tenant_slug)),
        h('td', {}, waveName(tenant.wave)),
        h('td', { class: 'details-cell' }, tenant.error || ''),
        h('td', { class: 'num' }, String(tenant.attempts)));
    }));
  };

  /* ---------- the wizard ---------- */

  var REVIEW_STEP = 6;
  var PROVISIONING_STEP = 7;
  var DESCRIPTION_MAX = 500;
  var CONTACT_MAX = 100;
  var DATA_SOURCE_NAME_RULE = /^[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?$/;

  function slugProblem(value) {
    if (value === '') return 'Enter a slug.';
    if (/[A-Z]/.test(value)) return 'Use lowercase letters only.';
    if (!/^[a-z]/.test(value)) return 'Start with a letter.';
    if (/[^a-z0-9-]/.test(value)) return 'Use only lowercase letters, digits and hyphens.';
    if (value.length < 3) return 'Use at least 3 characters.';
    if (value.length > 40) return 'Use at most 40 characters.';
    return SLUG_RULE.test(value) ? null : 'The slug must match ^[a-z][a-z0-9-]{2,39}$.';
  }

  /* Which field a server error concerns when its body names none: the same table as wizard.rs
   * (field_for_error). */
  function fieldForError(code, message) {
    message = String(message || '').toLowerCase();
    switch (code) {
      case 'E_INVALID_SLUG': case 'E_ALREADY_PROVISIONED': case 'E_PARTIAL_STATE': case 'E_CONFLICT':
        return 'slug';
      case 'E_DB_SERVER_NOT_FOUND': case 'E_NO_CAPACITY':
        return 'server';
      case 'E_INVALID_INPUT':
        if (message.indexOf('display name') === 0) return 'display_name';
        if (message.indexOf('admin email') === 0 || message.indexOf('email') >= 0) return 'admin_email';
        if (message.indexOf('budget') === 0) return 'budget';
        if (message.indexOf('description') === 0) return 'description';
        if (message.indexOf('contact name') === 0) return 'contact_name';
        if (message.indexOf('resource tier') === 0) return 'resource_tier';
        if (message.indexOf('isolation') === 0 || message.indexOf('gives each tenant') >= 0) return 'isolation';
        if (message.indexOf('module') >= 0) return 'modules';
        if (message.indexOf('plan') === 0) return 'plan';
        if (message.indexOf('region') === 0) return 'region';
        if (message.indexOf('server') === 0) return 'server';
        if (message.indexOf('slug') >= 0) return 'slug';
        return 'form';
      default:
        return 'form';
    }
  }

  /* The step a field lives on: the same table as wizard.rs (`step_of`). */
  function stepOf(field) {
    if (['slug', 'display_name', 'admin_email', 'plan', 'budget', 'description', 'contact_name'].indexOf(field) >= 0) return 1;
    if (['region', 'server', 'resource_tier', 'isolation'].indexOf(field) >= 0) return 2;
    if (field === 'modules') return 4;
    if (field.indexOf('data_sources') === 0) return 3;
    if (field.indexOf('security') === 0) return 5;
    return REVIEW_STEP;
  }

  function money(amount, currency) {
    return Number(amount).toFixed(2) + ' ' + currency;
  }

  /* A configured limit in milliseconds: the same rule as layout.rs (`limit_millis`). */
  function limitMillis(millis) {
    return millis >= 1000 && millis % 1000 === 0 ? millis / 1000 + ' s' : millis + ' ms';
  }

  function joinedOrNone(names) {
    return names.length ? names.join(', ') : 'none';
  }

  /* What the Review says about a plan at a resource tier in a region: the same texts and rule as wizard.rs
   * (`plan_review`); the tier's quota line comes from the server. */
  function planReview(offers, planName, tier, region, budget, dryRun) {
    var plan = offers.plans[planName];
    if (!plan || !plan.tiers[tier]) return null;
    var currency = offers.currency;
    var threshold = offers.threshold;
    var estimate = plan.tiers[tier].estimates[region];
    if (estimate === undefined) return null;
    var waits = !dryRun && (plan.approval_required || (budget === null ? estimate : budget) >= threshold);
    var reason = null;
    if (waits) {
      if (plan.approval_required) reason = 'plan ' + planName + ' always needs approval.';
      else if (budget !== null) {
        reason = 'the budget of ' + budget + ' ' + currency + ' reaches the auto-approve threshold of ' + threshold + ' ' + currency + '.';
      } else {
        reason = "the plan's estimate of " + money(estimate, currency) + ' reaches the auto-approve threshold of ' + threshold + ' ' + currency + '.';
      }
    }
    return {
      estimate: money(estimate, currency) + ' per month in ' + region,
      resources: plan.resources.join(' + '),
      quotas: plan.tiers[tier].quotas,
      flags: joinedOrNone(plan.flags),
      budget: budget === null ? "none: the plan's estimate counts" : budget + ' ' + currency + ' per month',
      approval_reason: reason
    };
  }

  /* An allowlist entry as `SecurityPolicy::parse_cidr` takes it, roughly: the server has the last word. */
  function cidrProblem(line) {
    var parts = line.split('/');
    var address = parts[0];
    var prefix = parts.length === 2 ? parts[1] : null;
    var ok = false;
    if (parts.length <= 2 && /^\d{1,3}(\.\d{1,3}){3}$/.test(address)) {
      ok = address.split('.').every(function (octet) { return Number(octet) <= 255; }) &&
        (prefix === null || (/^\d{1,2}$/.test(prefix) && Number(prefix) <= 32));
    } else if (parts.length <= 2 && address.indexOf(':') >= 0 && /^[0-9a-fA-F:.]+$/.test(address)) {
      ok = prefix === null || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= 128);
    }
    return ok ? null : '"' + line + '" is not a network in CIDR notation (like 10.0.0.0/8 or 2001:db8::/32)';
  }

  var BUDGET_RULE = /^\d{1,15}$/;

  function randomKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (byte) { return byte.toString(16).padStart(2, '0'); }).join('');
  }

  function enhanceWizard(form) {
    var fieldsets = form.querySelectorAll('fieldset.wizard-step');
    var stepItems = document.querySelectorAll('.steps li');
    var stepInput = form.querySelector('input[name="step"]');
    var keyInput = form.querySelector('input[name="idempotency_key"]');
    var formError = form.querySelector('.form-error');
    var buttons = {
      next: form.querySelector('[data-wizard="next"]'),
      provision: form.querySelector('[data-wizard="provision"]'),
      back: form.querySelector('[data-wizard="back"]')
    };
    var sourceList = form.querySelector('.data-sources');
    var sourceTemplate = form.querySelector('#data-source-row');
    var sourcesEmpty = form.querySelector('.data-sources-empty');
    var addSource = form.querySelector('[data-source-action="add"]');
    var drawer = document.getElementById('job-drawer');
    var live = null;
    var step = Number(form.getAttribute('data-step')) || 1;
    var offers = null;
    try {
      offers = JSON.parse(form.getAttribute('data-plans') || 'null');
    } catch (error) {
      offers = null; // steps 2 and 4 and the Review keep what the server rendered
    }
    var approvalNotice = form.querySelector('.approval-notice');
    // Whether the operator chose these themselves; until then they follow the billing tier.
    var isolationTouched = false;
    var modulesTouched = form.querySelector('input[name="modules_chosen"]') !== null;
    // The modules field is sent from step 4 on, as without JavaScript.
    var modulesChosen = modulesTouched;

    function input(name) { return form.elements.namedItem(name); }
    // The security fields' boxes go by their form names (`allowed_cidrs`); the API names them `security.…`.
    function fieldBox(name) {
      return form.querySelector('[data-field="' + name + '"]') ||
        form.querySelector('[data-field="' + name.replace(/^security\./, '') + '"]');
    }
    function currentPlan() { return offers ? offers.plans[input('plan').value] : null; }
    function radioValue(name) {
      var checked = form.querySelector('input[name="' + name + '"]:checked');
      return checked ? checked.value : '';
    }

    function setError(name, message) {
      var box = fieldBox(name);
      if (!box) return false;
      var slot = box.classList.contains('field-error') ? box : box.querySelector('.field-error');
      slot.textContent = message || '';
      box.querySelectorAll('input, select, textarea').forEach(function (control) {
        if (message) control.setAttribute('aria-invalid', 'true');
        else control.removeAttribute('aria-invalid');
      });
      return true;
    }

    function setFormError(message) {
      formError.textContent = message || '';
      formError.hidden = !message;
    }

    function selectedText(name) {
      var select = input(name);
      var option = select.options[select.selectedIndex];
      return option ? option.textContent : '';
    }

    function budgetValue() {
      var raw = input('budget').value.trim();
      return BUDGET_RULE.test(raw) ? Number(raw) : null;
    }

    /* ----- step 1: the description's counter ----- */
    var counter = form.querySelector('[data-counter="description"]');
    function updateCounter() {
      var length = Array.from(input('description').value.trim()).length;
      counter.textContent = length + ' / ' + DESCRIPTION_MAX;
      counter.classList.toggle('over', length > DESCRIPTION_MAX);
    }
    input('description').addEventListener('input', function () { updateCounter(); setError('description', null); });

    /* ----- step 2: each tier's numbers for the chosen plan and region; compute follows the plan ----- */
    function fillInfrastructure() {
      var plan = currentPlan();
      if (!plan) return;
      form.querySelectorAll('[data-tier-detail]').forEach(function (cell) {
        var tier = plan.tiers[cell.getAttribute('data-tier-detail')];
        var estimate = tier ? tier.estimates[input('region').value] : undefined;
        if (estimate !== undefined) cell.textContent = tier.capacity + ' \u00b7 ' + money(estimate, offers.currency) + ' per month';
      });
      if (!isolationTouched) {
        form.querySelectorAll('input[name="isolation"]').forEach(function (radio) {
          radio.checked = radio.value === plan.isolation;
        });
      }
    }
    form.querySelectorAll('input[name="isolation"]').forEach(function (radio) {
      radio.addEventListener('change', function () { isolationTouched = true; setError('isolation', null); });
    });
    input('region').addEventListener('change', fillInfrastructure);

    /* ----- step 3: data source rows ----- */
    function sourceRows() { return Array.from(sourceList.querySelectorAll('fieldset.data-source')); }

    // A row's ids, error targets and button values carry its number; after a removal they are renumbered.
    function numberRow(row, index) {
      var renumber = function (value) {
        return value
          .replace(/data_sources\[(\d+|__index__)\]/g, 'data_sources[' + index + ']')
          .replace(/field-ds-(\d+|__index__)-/g, 'field-ds-' + index + '-')
          .replace(/_source:(\d+|__index__)/g, '_source:' + index);
      };
      row.setAttribute('data-row', String(index));
      [row].concat(Array.from(row.querySelectorAll('*'))).forEach(function (element) {
        ['id', 'for', 'data-field', 'aria-describedby'].forEach(function (attribute) {
          var value = element.getAttribute(attribute);
          if (value) element.setAttribute(attribute, renumber(value));
        });
        if (element.tagName === 'BUTTON') element.value = renumber(element.value);
      });
      row.querySelector('.row-number').textContent = String(index + 1);
    }

    function syncSourceList() {
      var rows = sourceRows();
      rows.forEach(numberRow);
      sourcesEmpty.hidden = rows.length > 0;
      addSource.disabled = rows.length >= 10;
    }

    function addSourceRow() {
      var holder = document.createElement('div');
      holder.innerHTML = sourceTemplate.innerHTML; // the server's own markup for an empty row
      var row = holder.firstElementChild;
      sourceList.appendChild(row);
      syncSourceList();
      row.querySelector('input').focus();
    }

    function removeSourceRow(index) {
      var row = sourceRows()[index];
      if (!row) return;
      row.remove();
      syncSourceList();
      var rows = sourceRows();
      var neighbour = rows[index] || rows[index - 1];
      if (neighbour) neighbour.querySelector('input').focus();
      else addSource.focus();
    }

    function sourceValues(row) {
      return {
        name: row.querySelector('[name="ds_name"]').value.trim(),
        kind: row.querySelector('[name="ds_kind"]').value,
        url: row.querySelector('[name="ds_url"]').value.trim()
      };
    }

    /* The result at the row, in the same words as wizard.rs (`check_result`). */
    function showCheck(row, check) {
      var status = row.querySelector('.data-source-check');
      if (check.reachable) {
        status.replaceChildren(h('span', { class: 'pill complete' }, 'reachable'),
          ' ' + check.endpoint + ' answered in ' + check.millis + ' ms');
      } else {
        status.replaceChildren(h('span', { class: 'pill failed' }, 'unreachable'),
          ' ' + check.endpoint + ': ' + check.detail);
      }
    }

    function checkSource(index, button) {
      var row = sourceRows()[index];
      if (!row) return;
      var source = sourceValues(row);
      var status = row.querySelector('.data-source-check');
      setError('data_sources[' + index + '].kind', null);
      setError('data_sources[' + index + '].url', null);
      status.textContent = 'Checking\u2026';
      button.disabled = true;
      fetch('/platform/data-sources/check', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRF-Token': csrfToken() },
        body: JSON.stringify({ kind: source.kind, url: source.url })
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (response.ok) {
            showCheck(row, answer);
          } else {
            status.textContent = '';
            var field = 'data_sources[' + index + '].' + (answer.field === 'kind' ? 'kind' : 'url');
            setError(field, (answer.detail || 'the check failed') + ' (' + (answer.error_code || 'E_INTERNAL') + ')');
          }
        });
      }).catch(function () {
        status.textContent = 'The server could not be reached. Check the connection and try again.';
      }).then(function () {
        button.disabled = false;
      });
    }

    sourceList.addEventListener('input', function (event) {
      var row = event.target.closest('fieldset.data-source');
      var box = event.target.closest('[data-field]');
      if (row && box) setError(box.getAttribute('data-field'), null);
    });

    /* ----- step 4: the modules the billing tier allows, and the resources it gives ----- */
    function fillServices() {
      var plan = currentPlan();
      if (!plan) return;
      form.querySelectorAll('[data-module]').forEach(function (option) {
        var name = option.getAttribute('data-module');
        var allowed = plan.modules.indexOf(name) >= 0;
        var box = option.querySelector('input');
        box.disabled = !allowed;
        if (!allowed) box.checked = false;
        else if (!modulesTouched) box.checked = true;
        var reason = option.querySelector('.module-unavailable');
        reason.textContent = ' \u2014 not in the ' + input('plan').value + ' tier; choose a tier that has it';
        reason.hidden = allowed;
      });
      var list = form.querySelector('[data-review="resources_list"]');
      list.replaceChildren.apply(list, plan.resources.map(function (resource) { return h('li', {}, resource); }));
    }
    form.querySelectorAll('input[name="modules"]').forEach(function (box) {
      box.addEventListener('change', function () { modulesTouched = true; setError('modules', null); });
    });

    function chosenModules() {
      return Array.from(form.querySelectorAll('input[name="modules"]:checked:not(:disabled)')).map(function (box) {
        return box.value;
      });
    }

    /* ----- step 5: the allowlist, one network per line ----- */
    function cidrLines() {
      return input('allowed_cidrs').value.split('\n').map(function (line) { return line.trim(); });
    }
    input('allowed_cidrs').addEventListener('input', function () { setError('security.allowed_cidrs', null); });

    /* ----- step 6: the Review ----- */
    function fillReview() {
      var description = input('description').value.trim();
      var contact = input('contact_name').value.trim();
      var networks = cidrLines().filter(function (line) { return line !== ''; });
      var values = {
        slug: input('slug').value.trim(),
        display_name: input('display_name').value.trim(),
        description: description || 'none',
        admin_email: input('admin_email').value.trim(),
        contact_name: contact || 'none',
        plan: input('plan').value,
        region: input('region').value,
        resource_tier: radioValue('resource_tier'),
        isolation: radioValue('isolation'),
        server: input('server').value ? input('server').value : selectedText('server'),
        data_sources: joinedOrNone(sourceRows().map(function (row) {
          var source = sourceValues(row);
          return source.name + ' (' + source.kind + ')';
        })),
        modules: joinedOrNone(Array.from(form.querySelectorAll('input[name="modules"]:checked:not(:disabled)')).map(function (box) {
          return box.parentElement.querySelector('strong').textContent;
        })),
        auth_method: input('auth_method').value,
        mfa_policy: input('mfa_policy').value,
        allowed_cidrs: networks.length ? networks.join(', ') : 'any address'
      };
      var review = offers ? planReview(offers, values.plan, values.resource_tier, values.region, budgetValue(), input('dry_run').checked) : null;
      if (!review) return; // without the plans, the server-rendered Review stays
      Object.keys(review).forEach(function (name) { values[name] = review[name]; });
      form.querySelectorAll('fieldset[data-step="6"] [data-review]').forEach(function (cell) {
        cell.textContent = values[cell.getAttribute('data-review')] || '';
      });
      approvalNotice.hidden = !review.approval_reason;
    }

    function markStep(number) {
      stepItems.forEach(function (item) {
        var itemStep = Number(item.getAttribute('data-step'));
        if (itemStep === number) item.setAttribute('aria-current', 'step');
        else item.removeAttribute('aria-current');
        item.classList.toggle('done', itemStep < number);
      });
    }

    function show(number, focusField) {
      step = number;
      stepInput.value = String(number);
      form.setAttribute('data-step', String(number));
      fieldsets.forEach(function (fieldset) {
        fieldset.hidden = Number(fieldset.getAttribute('data-step')) !== number;
      });
      markStep(number);
      buttons.next.hidden = number === REVIEW_STEP;
      buttons.provision.hidden = number !== REVIEW_STEP;
      buttons.back.hidden = number === 1;
      if (number === 2) fillInfrastructure();
      if (number === 4) { fillServices(); modulesChosen = true; }
      if (number === REVIEW_STEP) fillReview();
      var box = focusField ? fieldBox(focusField) : null;
      var target = box ? box.querySelector('input:not(:disabled), select, textarea') :
        form.querySelector('fieldset.wizard-step[data-step="' + number + '"] :is(input:not([type="hidden"]):not(:disabled), select, textarea)');
      if (target && target.focus) target.focus();
    }

    /* The checks a browser can make before asking the server; returns the first field with a problem. */
    function checkStep(number) {
      var problems = [];
      if (number === 1) {
        var length = input('display_name').value.trim().length;
        problems.push(['display_name', length < 3 || length > 100 ? 'Use 3 to 100 characters.' : null]);
        problems.push(['slug', slugProblem(input('slug').value.trim())]);
        var description = Array.from(input('description').value.trim()).length;
        problems.push(['description', description > DESCRIPTION_MAX ?
          'description must have at most ' + DESCRIPTION_MAX + ' characters; it has ' + description : null]);
        problems.push(['plan', input('plan').value ? null : 'Pick a billing tier.']);
        problems.push(['admin_email', EMAIL_SHAPE.test(input('admin_email').value.trim()) ? null : 'Enter a valid email address.']);
        var contact = input('contact_name').value.trim().length;
        problems.push(['contact_name', contact > CONTACT_MAX ? 'Use at most ' + CONTACT_MAX + ' characters.' : null]);
        var budget = input('budget').value.trim();
        problems.push(['budget', budget === '' || BUDGET_RULE.test(budget) ? null : 'Enter a whole number, or leave it empty.']);
      }
      if (number === 2) {
        problems.push(['region', input('region').value ? null : 'Pick a region.']);
        var plan = currentPlan();
        var isolation = radioValue('isolation');
        problems.push(['isolation', plan && isolation && isolation !== plan.isolation ?
          'The ' + input('plan').value + ' tier gives each tenant ' +
            (plan.isolation === 'schema' ? 'a schema in a shared database' : 'its own database') +
            '; choose ' + (plan.isolation === 'schema' ? 'Shared' : 'Dedicated') + ' or another tier.' : null]);
      }
      if (number === 3) {
        var seen = [];
        sourceRows().forEach(function (row, index) {
          var source = sourceValues(row);
          var nameProblem = null;
          if (!DATA_SOURCE_NAME_RULE.test(source.name)) {
            nameProblem = 'Use 1 to 32 lowercase letters, digits and hyphens, starting with a letter.';
          } else if (seen.indexOf(source.name) >= 0) {
            nameProblem = 'data source name "' + source.name + '" is given twice';
          }
          seen.push(source.name);
          problems.push(['data_sources[' + index + '].name', nameProblem]);
          var urlProblem = null;
          try {
            if (!new URL(source.url).host) throw new Error('no host');
          } catch (error) {
            urlProblem = 'data source URL is not a URL: write ' + source.kind + '://host[:port]/\u2026';
          }
          problems.push(['data_sources[' + index + '].url', urlProblem]);
        });
      }
      if (number === 5) {
        var bad = [];
        cidrLines().forEach(function (line, index) {
          var problem = line === '' ? null : cidrProblem(line);
          if (problem) bad.push('line ' + (index + 1) + ': ' + problem);
        });
        problems.push(['security.allowed_cidrs', bad.length ? bad.join('; ') : null]);
      }
      var firstInvalid = null;
      problems.forEach(function (problem) {
        setError(problem[0], problem[1]);
        if (problem[1] && !firstInvalid) firstInvalid = problem[0];
      });
      return firstInvalid;
    }

    // The slug rule, as you type.
    input('slug').addEventListener('input', function () {
      var value = input('slug').value.trim();
      setError('slug', value === '' ? null : slugProblem(value));
    });
    ['display_name', 'admin_email', 'budget', 'contact_name'].forEach(function (name) {
      input(name).addEventListener('input', function () { setError(name, null); });
    });
    // A dry run never waits for approval: the notice follows the checkbox.
    input('dry_run').addEventListener('change', function () { if (step === REVIEW_STEP) fillReview(); });
    input('server').addEventListener('change', function () { setError('server', null); });

    function showServerError(problem) {
      var code = problem.error_code || 'E_INTERNAL';
      var detail = problem.detail || 'the request failed';
      var field = problem.field || fieldForError(code, detail);
      var message = detail + ' (' + code + ')';
      if (field === 'form' || !setError(field, message)) {
        setFormError(message);
        return;
      }
      show(stepOf(field), field);
    }

    /* The same JSON as `POST /platform/tenants` takes from any client; a field left at its default is left out. */
    function requestBody() {
      var body = {
        slug: input('slug').value.trim(),
        display_name: input('display_name').value.trim(),
        admin_email: input('admin_email').value.trim(),
        plan: input('plan').value,
        region: input('region').value,
        dry_run: input('dry_run').checked
      };
      var serverName = input('server').value;
      if (serverName) body.server = serverName;
      var budget = budgetValue();
      if (budget !== null) body.budget = budget;
      var description = input('description').value.trim();
      if (description) body.description = description;
      var contact = input('contact_name').value.trim();
      if (contact) body.contact_name = contact;
      var tier = radioValue('resource_tier');
      if (tier && tier !== 'medium') body.resource_tier = tier;
      var isolation = radioValue('isolation');
      if (isolation) body.isolation = isolation;
      var sources = sourceRows().map(sourceValues);
      if (sources.length) body.data_sources = sources;
      var plan = currentPlan();
      var modules = chosenModules();
      // The plan's own modules need no saying; a choice that differs from them does.
      if (modulesChosen && !(plan && modules.length === plan.modules.length)) body.modules = modules;
      var security = {};
      if (input('auth_method').value !== 'password') security.auth_method = input('auth_method').value;
      if (input('mfa_policy').value !== 'optional') security.mfa_policy = input('mfa_policy').value;
      var networks = cidrLines().filter(function (line) { return line !== ''; });
      if (networks.length) security.allowed_cidrs = networks;
      if (Object.keys(security).length) body.security = security;
      return body;
    }

    function provision(button) {
      var body = requestBody();
      setFormError(null);
      button.disabled = true;
      fetch('/platform/tenants', {
        method: 'POST',
        credentials: 'same-origin',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/json',
          'X-CSRF-Token': csrfToken(),
          'Idempotency-Key': keyInput.value
        },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          if (response.status === 202) {
            // A new request gets a new key; a repeat of this one (double click) got the same job.
            keyInput.value = randomKey();
            openDrawer(answer.job_id, answer.tenant_slug, body.dry_run);
          } else {
            showServerError(answer);
          }
        });
      }).catch(function () {
        setFormError('The server could not be reached. Check the connection and try again.');
      }).then(function () {
        button.disabled = false;
      });
    }

    function openDrawer(jobId, slug, dryRun) {
      var title = drawer.querySelector('#drawer-title');
      title.textContent = (dryRun ? 'Dry run: ' : 'Provisioning ') + slug;
      if (live) live.stop();
      var section = jobSkeleton(jobId, drawer.getAttribute('data-can-operate') === 'true',
        drawer.getAttribute('data-error-help'));
      drawer.querySelector('.drawer-body').replaceChildren(section);
      drawer.querySelector('.drawer-job-link').setAttribute('href', jobPath(jobId));
      drawer.hidden = false;
      void drawer.offsetWidth; // start the slide from off-screen
      drawer.classList.add('open');
      markStep(PROVISIONING_STEP);
      title.focus();
      live = new JobLive(section, {
        onTerminal: function (job) {
          // A failure that concerns a field of the form is shown there too.
          var field = job.error_code ? fieldForError(job.error_code, job.error_message) : 'form';
          if (field !== 'form') setError(field, (job.error_message || '') + ' (' + job.error_code + ')');
        }
      });
      live.start();
    }

    function closeDrawer() {
      if (drawer.hidden) return;
      if (live) live.stop();
      drawer.classList.remove('open');
      var hide = function () { drawer.hidden = true; };
      drawer.addEventListener('transitionend', hide, { once: true });
      setTimeout(hide, 400); // when no transition runs (reduced motion)
      markStep(step);
      buttons.provision.focus();
    }

    drawer.querySelector('.drawer-close').addEventListener('click', closeDrawer);
    drawer.addEventListener('keydown', function (event) {
      if (event.key === 'Escape') closeDrawer();
    });

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      var submitter = event.submitter;
      var sourceAction = submitter ? submitter.getAttribute('data-source-action') : null;
      if (sourceAction) {
        var row = submitter.closest('fieldset.data-source');
        var index = row ? sourceRows().indexOf(row) : -1;
        if (sourceAction === 'add') addSourceRow();
        else if (sourceAction === 'remove') removeSourceRow(index);
        else if (sourceAction === 'check') checkSource(index, submitter);
        return;
      }
      var action = submitter && !submitter.hidden ? submitter.getAttribute('data-wizard') : (step < REVIEW_STEP ? 'next' : null);
      if (action === 'back') {
        show(Math.max(1, step - 1));
      } else if (action === 'next') {
        var invalid = checkStep(step);
        if (invalid) {
          show(step, invalid);
          return;
        }
        show(Math.min(REVIEW_STEP, step + 1));
      } else if (action === 'provision') {
        for (var number = 1; number < REVIEW_STEP; number += 1) {
          var firstInvalid = checkStep(number);
          if (firstInvalid) {
            show(number, firstInvalid);
            return;
          }
        }
        provision(buttons.provision);
      }
    });
    input('plan').addEventListener('change', function () { setError('isolation', null); setError('modules', null); });
    updateCounter();
    form.setAttribute('data-enhanced', 'true');
  }

  /* ---------- start ---------- */

  function start() {
    setInterval(function () { refreshTimes(document); }, 5000);
    var wizard = document.getElementById('wizard');
    if (wizard) enhanceWizard(wizard);
    document.querySelectorAll('main .job-live').forEach(function (section) {
      if (section.closest('.drawer')) return;
      var live = new JobLive(section);
      if (TERMINAL.indexOf(section.getAttribute('data-status')) < 0) live.start();
    });
    document.querySelectorAll('main .rollout-live').forEach(function (section) {
      if (TERMINAL.indexOf(section.getAttribute('data-status')) < 0) new RolloutLive(section).start();
    });
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

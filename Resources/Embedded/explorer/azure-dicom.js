// Orthanc Explorer extension of the Azure DICOM mirror plugin. Orthanc appends it to
// /plugins/explorer.js, which /app/explorer.html loads after its own scripts, so jQuery 1.7 and
// jQuery Mobile 1.1 are there. It adds, on the patient, study, series and instance pages, a panel
// with the mirror state of the resource's instances and buttons to mirror or retry them, and a
// link to the dashboard on the home page. URLs are relative to /app/explorer.html, so that the
// extension also works behind a reverse-proxy prefix.
(function () {
  'use strict';

  var API_ROOT = '../azure-dicom/';
  var JOBS_ROOT = '../jobs/';
  var DASHBOARD_URL = '../azure-dicom/ui/index.html';
  var PAGES = ['patient', 'study', 'series', 'instance'];
  var POLL_INTERVAL_MS = 1000;
  // Polling after an action stops after this many polls (10 minutes) even if the state
  // has not settled. The Refresh button starts it again.
  var MAX_POLLS = 600;
  var STATE_ORDER = ['Pending', 'Sending', 'Mirrored', 'AlreadyPresent', 'Failed', 'Skipped',
                     'RolledBack'];
  var SUMMARY_TEXT = {
    Mirrored: 'Mirrored',
    Pending: 'Pending',
    Failed: 'Failed',
    NotMirrored: 'Not mirrored'
  };

  // The resource that each page shows, {id, token}, by page. An action's poll stops when the
  // token changes.
  var shownResources = {};

  var STYLE =
    '.azure-dicom-badge { display: inline-block; padding: 2px 10px; border-radius: 10px;' +
    ' font-weight: bold; color: #fff; background: #777; }' +
    '.azure-dicom-badge[data-summary="Mirrored"] { background: #2e7d32; }' +
    '.azure-dicom-badge[data-summary="Pending"] { background: #b26a00; }' +
    '.azure-dicom-badge[data-summary="Failed"] { background: #c62828; }' +
    '.azure-dicom-badge[data-summary="NotMirrored"] { background: #546e7a; }' +
    '.azure-dicom-counts { white-space: normal !important; margin-top: 6px !important; }' +
    '.azure-dicom-message { white-space: normal !important; font-weight: normal; }' +
    '.azure-dicom-message.azure-dicom-error { color: #c62828; }';

  // Returns the "Message" of a JSON error response, or the HTTP status when there is none.
  function describeError(xhr) {
    var text = xhr && xhr.responseText;
    if (text) {
      try {
        var body = JSON.parse(text);
        if (body && body.Message) {
          return body.Message;
        }
      } catch (ignored) {
        // not JSON: fall through to the status line
      }
    }
    if (!xhr || xhr.status === 0) {
      return 'no response from Orthanc';
    }
    return 'HTTP ' + xhr.status + (xhr.statusText ? ' ' + xhr.statusText : '');
  }

  function getJson(url, onSuccess, onError) {
    $.ajax({
      url: url,
      type: 'GET',
      dataType: 'json',
      cache: false,
      success: onSuccess,
      error: function (xhr) {
        onError(describeError(xhr));
      }
    });
  }

  function postJson(url, body, onSuccess, onError) {
    $.ajax({
      url: url,
      type: 'POST',
      data: JSON.stringify(body),
      contentType: 'application/json',
      dataType: 'json',
      cache: false,
      success: onSuccess,
      error: function (xhr) {
        onError(describeError(xhr));
      }
    });
  }

  function element(page, part) {
    return $('#azure-dicom-' + page + '-' + part);
  }

  function refreshList(page) {
    var list = $('#azure-dicom-' + page);
    if (list.data('listview')) {
      list.listview('refresh');
    }
  }

  function showMessage(page, text, isError) {
    var message = element(page, 'message');
    message.text(text).toggleClass('azure-dicom-error', !!isError).show();
    refreshList(page);
  }

  function hideMessage(page) {
    element(page, 'message').text('').hide();
    refreshList(page);
  }

  function formatCounts(answer) {
    var parts = [];
    var counts = answer.Counts || {};
    for (var i = 0; i < STATE_ORDER.length; i++) {
      var state = STATE_ORDER[i];
      if (counts[state]) {
        parts.push(counts[state] + ' ' + state);
      }
    }
    if (answer.NotQueued) {
      parts.push(answer.NotQueued + ' not queued');
    }
    var text = answer.Instances + (answer.Instances === 1 ? ' instance' : ' instances');
    return parts.length === 0 ? text : text + ': ' + parts.join(', ');
  }

  function showState(page, answer) {
    var summary = answer.Summary;
    element(page, 'badge')
      .attr('data-summary', summary)
      .text(SUMMARY_TEXT[summary] || summary);
    element(page, 'counts').text(formatCounts(answer));
    element(page, 'retry-item').toggle(!!(answer.Counts && answer.Counts.Failed > 0));
    refreshList(page);
  }

  function isCurrent(page, token) {
    return shownResources[page] && shownResources[page].token === token;
  }

  // Loads the state of the page's resource, then calls onLoaded with the response unless the page
  // shows another resource by then.
  function loadState(page, token, onLoaded) {
    var id = shownResources[page].id;
    getJson(API_ROOT + 'resources/' + encodeURIComponent(id), function (answer) {
      if (isCurrent(page, token)) {
        showState(page, answer);
        if (onLoaded) {
          onLoaded(answer);
        }
      }
    }, function (message) {
      if (isCurrent(page, token)) {
        element(page, 'badge').attr('data-summary', 'Unknown').text('Unknown');
        element(page, 'counts').text('');
        showMessage(page, 'Cannot read the mirror state: ' + message, true);
      }
    });
  }

  // Polls the state (and the job, when jobId is set) until the job has ended and no instance is
  // Pending or Sending, then shows doneText with the final state.
  function pollUntilSettled(page, token, jobId, doneText) {
    var polls = 0;
    var jobEnded = !jobId;
    var jobText = '';

    function poll() {
      if (!isCurrent(page, token)) {
        return;
      }
      polls++;
      if (!jobEnded) {
        getJson(JOBS_ROOT + encodeURIComponent(jobId), function (job) {
          if (job.State === 'Success') {
            jobEnded = true;
          } else if (job.State === 'Failure') {
            jobEnded = true;
            jobText = 'Job ' + jobId + ' failed: ' + (job.ErrorDescription || 'no description') +
              '. ';
          }
          checkState();
        }, function (message) {
          jobEnded = true;
          jobText = 'Cannot read job ' + jobId + ': ' + message + '. ';
          checkState();
        });
      } else {
        checkState();
      }
    }

    function checkState() {
      loadState(page, token, function (answer) {
        var active = (answer.Counts.Pending || 0) + (answer.Counts.Sending || 0);
        if (jobEnded && active === 0) {
          showMessage(page, jobText + doneText + ': ' + SUMMARY_TEXT[answer.Summary] + '.',
                      jobText !== '' || answer.Summary === 'Failed');
        } else if (polls >= MAX_POLLS) {
          showMessage(page, 'Still in progress after ' + MAX_POLLS * POLL_INTERVAL_MS / 1000 +
                      ' s; press Refresh to check again.', false);
        } else {
          setTimeout(poll, POLL_INTERVAL_MS);
        }
      });
    }

    poll();
  }

  function mirror(page) {
    var current = shownResources[page];
    if (!current) {
      return false;
    }
    showMessage(page, 'Queueing for Azure…', false);
    postJson(API_ROOT + 'sync', { Resources: [current.id] }, function (answer) {
      if (isCurrent(page, current.token)) {
        showMessage(page, 'Queued by job ' + answer.ID + '; sending…', false);
        pollUntilSettled(page, current.token, answer.ID, 'Job ' + answer.ID + ' done');
      }
    }, function (message) {
      if (isCurrent(page, current.token)) {
        showMessage(page, 'Mirror to Azure failed: ' + message, true);
      }
    });
    return false;
  }

  function retryFailed(page) {
    var current = shownResources[page];
    if (!current) {
      return false;
    }
    showMessage(page, 'Queueing the failed instances again…', false);
    postJson(API_ROOT + 'retry', { Resources: [current.id] }, function (answer) {
      if (isCurrent(page, current.token)) {
        var text = answer.Requeued + (answer.Requeued === 1 ? ' instance' : ' instances') +
          ' queued again';
        showMessage(page, text + '; sending…', false);
        pollUntilSettled(page, current.token, null, text);
      }
    }, function (message) {
      if (isCurrent(page, current.token)) {
        showMessage(page, 'Retry failed: ' + message, true);
      }
    });
    return false;
  }

  function showResource(page) {
    var uuid = $.mobile.pageData && $.mobile.pageData.uuid;
    if (!uuid) {
      return;
    }
    if (shownResources[page] && shownResources[page].id === uuid) {
      return;  // already shown, e.g. pageshow right after pagebeforeshow
    }
    shownResources[page] = { id: uuid, token: {} };
    element(page, 'badge').attr('data-summary', 'Loading').text('Loading…');
    element(page, 'counts').text('');
    element(page, 'retry-item').hide();
    hideMessage(page);
    loadState(page, shownResources[page].token);
  }

  function reloadResource(page) {
    if (shownResources[page]) {
      shownResources[page].token = {};  // ends any poll of an earlier action
      hideMessage(page);
      loadState(page, shownResources[page].token);
    }
    return false;
  }

  // Builds the panel, placed under the page's own "Interact" list.
  function createPanel(page) {
    var prefix = 'azure-dicom-' + page;
    var list = $('<ul>')
      .attr('id', prefix)
      .attr('data-role', 'listview')
      .attr('data-inset', 'true')
      .attr('data-theme', 'd')
      .attr('data-divider-theme', 'c')
      .append($('<li>').attr('data-role', 'list-divider').text('Azure DICOM mirror'))
      .append($('<li>')
        .append($('<span>').attr('id', prefix + '-badge').addClass('azure-dicom-badge')
          .attr('data-summary', 'Loading').text('Loading…'))
        .append($('<p>').attr('id', prefix + '-counts').addClass('azure-dicom-counts')))
      .append($('<li>').attr('data-icon', 'forward')
        .append($('<a>').attr('href', '#').attr('id', prefix + '-sync').text('Mirror to Azure')))
      .append($('<li>').attr('data-icon', 'refresh').attr('id', prefix + '-retry-item')
        .css('display', 'none')
        .append($('<a>').attr('href', '#').attr('id', prefix + '-retry').text('Retry failed')))
      .append($('<li>').attr('data-icon', 'refresh')
        .append($('<a>').attr('href', '#').attr('id', prefix + '-reload').text('Refresh state')))
      .append($('<li>').attr('id', prefix + '-message').addClass('azure-dicom-message')
        .css('display', 'none'));

    var interact = $('#' + page + '-delete').closest('ul');
    if (interact.length) {
      list.insertAfter(interact);
    } else {
      $('#' + page + ' [data-role="content"]').first().prepend(list);
    }
  }

  $('head').append($('<style>').attr('type', 'text/css').text(STYLE));

  $.each(PAGES, function (index, page) {
    $('#' + page).live('pagebeforecreate', function () {
      createPanel(page);
    });
    $('#' + page).live('pagebeforeshow pageshow', function () {
      showResource(page);
    });
    $('#' + page).live('pagehide', function () {
      delete shownResources[page];  // ends its poll, and the next visit loads the state again
    });
    $('#azure-dicom-' + page + '-sync').live('click', function () {
      return mirror(page);
    });
    $('#azure-dicom-' + page + '-retry').live('click', function () {
      return retryFailed(page);
    });
    $('#azure-dicom-' + page + '-reload').live('click', function () {
      return reloadResource(page);
    });
  });

  // The explorer goes from one study to another without leaving the page (back button, links
  // between resources of one level), and then calls its own Refresh() instead of pagebeforeshow.
  $(window).bind('hashchange', function () {
    setTimeout(function () {
      var active = $.mobile.activePage && $.mobile.activePage.attr('id');
      if ($.inArray(active, PAGES) !== -1) {
        showResource(active);
      }
    }, 0);
  });

  $('#lookup').live('pagebeforecreate', function () {
    var link = $('<a>')
      .attr('id', 'azure-dicom-dashboard-link')
      .attr('href', DASHBOARD_URL)
      .attr('data-role', 'button')
      .attr('data-icon', 'grid')
      .attr('data-ajax', 'false')
      .attr('rel', 'external')
      .text('Azure DICOM mirror dashboard');
    $('#lookup-form').before($('<div>').css('margin-bottom', '1em').append(link));
  });
}());

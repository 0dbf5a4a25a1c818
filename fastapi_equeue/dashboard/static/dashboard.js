// The dashboard's own script: the live stream, and messages from actions.
// Loaded from our origin only; no inline script, no eval (see the page's CSP).
(function () {
  "use strict";

  var body = document.body;
  var status = document.querySelector("[data-test=live-status]");
  var flash = document.getElementById("flash");
  var streamUrl = body.getAttribute("data-stream");
  var REFRESH_GAP = 1000; // ms between two refreshes at most once a second
  var source = null;
  var failures = 0;
  var retryTimer = null;
  var refreshTimer = null;
  var lastRefresh = 0;
  var seen = null; // the feed and version this page last showed

  function show(state) {
    status.textContent = state;
    status.setAttribute("data-state", state);
  }

  // Debounced, with the trailing change always refreshed.
  function refresh() {
    if (refreshTimer !== null) return;
    var wait = Math.max(0, lastRefresh + REFRESH_GAP - Date.now());
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      lastRefresh = Date.now();
      htmx.trigger(body, "eq:changed");
    }, wait);
  }

  function connect() {
    if (source !== null || document.hidden) return;
    source = new EventSource(streamUrl);
    source.addEventListener("hello", function (event) {
      var hello = JSON.parse(event.data);
      failures = 0;
      show("live");
      // Streams end every few seconds and reopen: refresh only if something changed between
      // two of them, or the server is another one (it restarted).
      if (seen !== null && (hello.feed !== seen.feed || hello.version !== seen.version)) {
        refresh();
      }
      seen = hello;
    });
    source.addEventListener("changed", function (event) {
      var changed = JSON.parse(event.data);
      if (seen !== null) seen.version = changed.version;
      refresh();
    });
    source.onerror = function () {
      source.close();
      source = null;
      // A stream that ends on schedule reopens at once; one that fails again says so and
      // backs off: 1, 2, 4, 8, then every 15 seconds, with some jitter.
      failures += 1;
      if (failures > 1) show("reconnecting");
      var delay = failures === 1 ? 0 : Math.min(15000, 1000 * Math.pow(2, failures - 2));
      clearTimeout(retryTimer);
      retryTimer = setTimeout(connect, delay * (0.8 + Math.random() * 0.4));
    };
  }

  function disconnect() {
    clearTimeout(retryTimer);
    if (source !== null) {
      source.close();
      source = null;
    }
    show("paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) disconnect();
    else connect();
  });

  // An action's refusal or error: show its message (text only) where messages go.
  function say(text, isError) {
    var p = document.createElement("p");
    p.className = isError ? "flash error" : "flash";
    p.setAttribute("role", "alert");
    p.setAttribute("data-test", isError ? "error" : "message");
    p.textContent = text;
    flash.replaceChildren(p);
  }

  body.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var text = new DOMParser().parseFromString(xhr.responseText, "text/html").body.textContent;
    if (event.detail.requestConfig && event.detail.requestConfig.verb !== "get") {
      say((text || "").trim() || "the server answered " + xhr.status, true);
    }
  });
  body.addEventListener("htmx:sendError", function (event) {
    if (event.detail.requestConfig && event.detail.requestConfig.verb !== "get") {
      say("the server did not answer; try again", true);
    }
  });

  // A refresh would replace what the user is typing into a form of the live region (a
  // queue's limits): while one has the focus, or was edited in the last minute and not sent,
  // refreshes wait.
  var EDIT_HOLD = 60000;
  var editedAt = 0;

  function inLive(element) {
    var live = document.getElementById("live");
    return live !== null && element !== null && live.contains(element);
  }

  function editing() {
    var focused = document.activeElement;
    var typing = inLive(focused) && focused.matches("input, select, textarea");
    return typing || Date.now() - editedAt < EDIT_HOLD;
  }

  body.addEventListener("input", function (event) {
    if (inLive(event.target)) editedAt = Date.now();
  });
  body.addEventListener("htmx:beforeRequest", function (event) {
    // The form was sent: its values are the queue's now, and the page may refresh.
    if (event.detail.elt.tagName === "FORM" && inLive(event.detail.elt)) editedAt = 0;
  });
  body.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target.id === "live" && editing()) {
      event.detail.shouldSwap = false;
      setTimeout(refresh, REFRESH_GAP * 2);
    }
  });

  // Forms marked data-autosubmit reload as soon as a choice changes (the submit page's type).
  body.addEventListener("change", function (event) {
    var form = event.target.closest("form[data-autosubmit]");
    if (form) form.requestSubmit();
  });

  connect();
})();

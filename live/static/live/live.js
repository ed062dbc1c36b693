// Livelog page: follow the live socket, keep the list current, never parse feed text as HTML.
(function () {
  "use strict";

  var list = document.getElementById("entries");
  if (!list) return;
  var statusBox = document.getElementById("status");
  var statusLabel = statusBox.querySelector(".label");
  var retryButton = document.getElementById("retry");
  var newButton = document.getElementById("new-entries");
  var filter = document.getElementById("feed-filter");
  var cursor = list.dataset.cursor || "";
  var feedId = list.dataset.feed || "";
  var MAX_ENTRIES = 500;
  var socket = null;
  var attempt = 0;
  var retryTimer = null;
  var unseen = 0;
  var baseTitle = document.title;

  // --- Rendering: elements built one by one; text goes in as text.
  var ALLOWED = {
    P: [], BR: [], A: ["href", "title"], EM: [], STRONG: [], B: [], I: [], U: [], S: [], SMALL: [],
    UL: [], OL: [], LI: [], BLOCKQUOTE: [], CODE: [], PRE: [], H1: [], H2: [], H3: [], H4: [], H5: [],
    H6: [], IMG: ["src", "alt", "title", "width", "height"], FIGURE: [], FIGCAPTION: [], HR: [],
    SUB: [], SUP: [], TABLE: [], THEAD: [], TBODY: [], TR: [], TD: [], TH: [], DL: [], DT: [], DD: [],
    SPAN: [], DIV: [], ABBR: ["title"], CITE: [], Q: [], DEL: [], INS: [], MARK: [], TIME: ["datetime"]
  };

  function safeUrl(value, schemes) {
    try {
      var url = new URL(value, document.baseURI);
      return schemes.indexOf(url.protocol) >= 0 ? url.href : "";
    } catch (e) {
      return "";
    }
  }

  // The summary was sanitized by the server. It is still parsed in an inert document and
  // copied node by node through an allowlist, so a sanitizer bug cannot reach this page.
  function summaryFragment(html) {
    var doc = new DOMParser().parseFromString(html || "", "text/html");
    var out = document.createDocumentFragment();
    (function copy(from, to) {
      from.childNodes.forEach(function (node) {
        if (node.nodeType === Node.TEXT_NODE) {
          to.appendChild(document.createTextNode(node.nodeValue));
        } else if (node.nodeType === Node.ELEMENT_NODE) {
          var attrs = ALLOWED[node.tagName];
          if (!attrs) { copy(node, to); return; }
          var el = document.createElement(node.tagName.toLowerCase());
          attrs.forEach(function (name) {
            var value = node.getAttribute(name);
            if (value === null) return;
            if (name === "href") value = safeUrl(value, ["http:", "https:", "mailto:"]);
            if (name === "src") value = safeUrl(value, ["http:", "https:"]);
            if (value) el.setAttribute(name, value);
          });
          if (el.tagName === "A") { el.rel = "noopener noreferrer nofollow"; el.target = "_blank"; }
          if (el.tagName === "IMG") { el.loading = "lazy"; el.referrerPolicy = "no-referrer"; }
          copy(node, el);
          to.appendChild(el);
        }
      });
    })(doc.body, out);
    return out;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function render(data, updated) {
    var article = el("article", "entry");
    article.id = "entry-" + data.id;
    article.dataset.id = data.id;
    var meta = el("p", "meta");
    var source = el("a", "source", data.feed.title);
    source.href = "/?feed=" + encodeURIComponent(data.feed.id);
    meta.appendChild(source);
    meta.appendChild(document.createTextNode(" "));
    var time = el("time");
    time.dateTime = data.published || "";
    meta.appendChild(time);
    if (updated) meta.appendChild(el("span", "updated-mark", "updated"));
    article.appendChild(meta);
    var title = el("h2", "title");
    var link = safeUrl(data.link, ["http:", "https:"]);
    if (link) {
      var a = el("a", "", data.title || "(untitled)");
      a.href = link;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
      title.appendChild(a);
    } else {
      title.textContent = data.title || "(untitled)";
    }
    article.appendChild(title);
    var summary = el("div", "summary");
    summary.appendChild(summaryFragment(data.summary_html));
    article.appendChild(summary);
    var foot = el("p", "foot");
    if (data.author) {
      foot.appendChild(el("span", "author", data.author));
      foot.appendChild(document.createTextNode(" · "));
    }
    var permalink = el("a", "permalink", "Permalink");
    permalink.href = "/entries/" + encodeURIComponent(data.id) + "/";
    foot.appendChild(permalink);
    article.appendChild(foot);
    refreshTime(time);
    return article;
  }

  // --- Relative times that stay current; the exact local time on hover.
  function refreshTime(node) {
    if (!node.dateTime) return;
    var when = new Date(node.dateTime);
    if (isNaN(when)) return;
    var seconds = Math.round((Date.now() - when.getTime()) / 1000);
    var text;
    if (seconds < 45) text = "just now";
    else if (seconds < 3600) text = Math.round(seconds / 60) + " min ago";
    else if (seconds < 86400) text = Math.round(seconds / 3600) + " h ago";
    else text = when.toLocaleDateString();
    node.textContent = text;
    node.title = when.toLocaleString();
  }
  function refreshTimes() { list.querySelectorAll("time").forEach(refreshTime); }
  refreshTimes();
  setInterval(refreshTimes, 30000);

  // --- Applying events
  function scrolledAway() { return window.scrollY > list.offsetTop + 40; }

  function apply(message) {
    if (message.cursor) cursor = message.cursor;
    var data = message.entry;
    if (feedId && String(data.feed.id) !== feedId) return;
    var existing = document.getElementById("entry-" + data.id);
    if (message.type === "entry.deleted") {
      if (existing) existing.remove();
      return;
    }
    if (existing) {
      existing.replaceWith(render(data, message.type === "entry.updated"));
      return;
    }
    if (message.type !== "entry.created") return;
    var empty = document.getElementById("empty");
    if (empty) empty.remove();
    // Keep what the reader is looking at in place while the list grows above it.
    var before = document.documentElement.scrollHeight;
    var away = scrolledAway();
    list.insertBefore(render(data, false), list.firstChild);
    if (away) {
      window.scrollBy(0, document.documentElement.scrollHeight - before);
      unseen += 1;
    }
    while (list.children.length > MAX_ENTRIES) list.lastElementChild.remove();
    showUnseen();
  }

  function showUnseen() {
    if (unseen > 0 && scrolledAway()) {
      newButton.textContent = unseen + (unseen === 1 ? " new entry" : " new entries");
      newButton.hidden = false;
    } else {
      unseen = 0;
      newButton.hidden = true;
    }
    document.title = unseen && document.hidden ? "(" + unseen + ") " + baseTitle : baseTitle;
  }
  newButton.addEventListener("click", function () {
    unseen = 0;
    window.scrollTo({ top: 0, behavior: "smooth" });
    showUnseen();
  });
  window.addEventListener("scroll", function () { if (!scrolledAway()) showUnseen(); }, { passive: true });
  document.addEventListener("visibilitychange", showUnseen);

  if (filter) {
    filter.addEventListener("change", function () {
      var url = new URL(window.location.href);
      if (filter.value) url.searchParams.set("feed", filter.value); else url.searchParams.delete("feed");
      window.location.assign(url.href);
    });
  }

  // --- The socket: resume from the last cursor, back off with jitter, say what state we are in.
  function setState(state, text) {
    statusBox.dataset.state = state;
    statusLabel.textContent = text;
    retryButton.hidden = state !== "offline";
  }

  function connect() {
    clearTimeout(retryTimer);
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var query = "?after=" + encodeURIComponent(cursor) + (feedId ? "&feed=" + encodeURIComponent(feedId) : "");
    setState(attempt ? "reconnecting" : "connecting", attempt ? "Reconnecting…" : "Connecting…");
    socket = new WebSocket(scheme + window.location.host + "/ws/live/" + query);
    socket.onopen = function () {
      attempt = 0;
      setState("live", "Live");
    };
    socket.onmessage = function (event) {
      try { apply(JSON.parse(event.data)); } catch (e) { /* one bad message must not stop the page */ }
    };
    socket.onclose = function () {
      socket = null;
      attempt += 1;
      if (!navigator.onLine || attempt > 8) {
        setState("offline", "Offline");
        if (!navigator.onLine) return;
      } else {
        setState("reconnecting", "Reconnecting…");
      }
      var delay = Math.min(30000, 500 * Math.pow(2, attempt - 1)) * (0.5 + Math.random());
      retryTimer = setTimeout(connect, delay);
    };
  }
  retryButton.addEventListener("click", function () { attempt = 0; connect(); });
  window.addEventListener("online", function () { if (!socket) { attempt = 0; connect(); } });
  connect();
})();

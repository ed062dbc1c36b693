// Livelog page: the server paints the first list; this keeps it current over the live socket.
// Feed text reaches the DOM only as text nodes and checked attribute values. The one thing parsed
// as HTML is the server-sanitized summary, in an inert document, copied out through an allowlist.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var list = $("entries");
  if (!list) return;
  var single = "single" in list.dataset; // an entry's own page: it follows corrections only
  var statusBox = $("status"), statusLabel = statusBox.querySelector(".label"), retryButton = $("retry");
  var newButton = $("new-entries"), announcer = $("announcer"), filter = $("feed-filter");
  var olderBox = $("older-box");
  var PAGE = Number(list.dataset.page) || 50;
  var MAX_ENTRIES = 200; // a page left open all day stays this small
  var cursor = list.dataset.cursor || "";
  var feedId = list.dataset.feed || "";
  // A blog's page follows its stream; an ended one's has no socket.
  var blog = list.dataset.blog || "", ended = "ended" in list.dataset;
  var base = blog ? "/blogs/" + encodeURIComponent(blog) + "/" : "/";
  var olderUrl = list.dataset.older ? api(list.dataset.older) : null;
  // The top of the list is not the newest entry (a history page, or trimmed): new ones are
  // counted, not inserted, until the reader asks for the newest.
  var detached = "before" in list.dataset;
  var socket = null, attempt = 0, retryTimer = null, loading = false, wantFocus = false, unseen = 0;
  var baseTitle = document.title, heard = [], announceTimer = null;

  function api(before) {
    var query = new URLSearchParams({ limit: PAGE });
    if (feedId) query.set("feed", feedId);
    if (blog) query.set("blog", blog);
    if (before) query.set("before", before);
    return "/api/entries/?" + query;
  }

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" } }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  // --- Rendering
  var ALLOWED = {
    P: [], BR: [], A: ["href"], EM: [], STRONG: [], B: [], I: [], UL: [], OL: [], LI: [],
    BLOCKQUOTE: [], CODE: [], PRE: [], H1: [], H2: [], H3: [], H4: [], H5: [], H6: [],
    IMG: ["src", "alt"], FIGURE: [], FIGCAPTION: []
  };
  // Other elements are unwrapped (their text kept), except these, which go with their content.
  var DROPPED = /^(SCRIPT|STYLE|TEMPLATE|NOSCRIPT|IFRAME|OBJECT|EMBED|TEXTAREA|TITLE|XMP|NOEMBED|NOFRAMES|SELECT)$/;
  // Under the page's Trusted Types policy, DOMParser refuses plain strings: this policy is the
  // only way in, and this file the only user of it.
  var summaryPolicy = window.trustedTypes
    ? window.trustedTypes.createPolicy("livelog-summary", { createHTML: String })
    : { createHTML: String };

  // Only absolute URLs (the server resolved them): "" or a relative one must not become a link
  // to this page.
  function safeUrl(value, schemes) {
    try {
      var url = new URL(value);
      return schemes.indexOf(url.protocol) >= 0 ? url.href : "";
    } catch (e) {
      return "";
    }
  }

  // The summary was sanitized by the server. It is still parsed in an inert document (no script
  // runs, nothing loads) and copied node by node through an allowlist, so a sanitizer bug or a
  // parser difference (mutation XSS) cannot reach this page.
  window.livelogFragment = summaryFragment; // the editors' preview (one policy only)
  function summaryFragment(html) {
    var doc = new DOMParser().parseFromString(summaryPolicy.createHTML(html || ""), "text/html");
    var out = document.createDocumentFragment();
    (function copy(from, to) {
      from.childNodes.forEach(function (node) {
        if (node.nodeType === Node.TEXT_NODE) {
          to.appendChild(document.createTextNode(node.nodeValue));
        } else if (node.namespaceURI === "http://www.w3.org/1999/xhtml") { // SVG and MathML are dropped
          var attrs = ALLOWED[node.tagName];
          if (!attrs) { if (!DROPPED.test(node.tagName)) copy(node, to); return; }
          var copied = document.createElement(node.tagName.toLowerCase());
          attrs.forEach(function (name) {
            var value = node.getAttribute(name);
            if (value !== null && name !== "alt") value = safeUrl(value, name === "href" ? ["http:", "https:", "mailto:"] : ["https:"]);
            if (value) copied.setAttribute(name, value);
          });
          if (copied.tagName === "A") { copied.rel = "noopener noreferrer nofollow"; copied.target = "_blank"; }
          if (copied.tagName === "IMG") { copied.loading = "lazy"; copied.referrerPolicy = "no-referrer"; }
          copy(node, copied);
          to.appendChild(copied);
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

  function render(data, marked, position) {
    var article = el("article", "entry");
    article.id = "entry-" + data.id;
    article.dataset.id = data.id;
    var feed = data.feed || { title: data.author }; // a post: its author, not a source
    article.dataset.feed = feed.id || "";
    article.dataset.cursor = position || "";
    article.tabIndex = -1;
    article.setAttribute("aria-labelledby", "title-" + data.id);
    var meta = article.appendChild(el("p", "meta"));
    var source = meta.appendChild(el(feed.id ? "a" : "span", "source", feed.title));
    if (feed.id) source.href = base + "?feed=" + encodeURIComponent(feed.id);
    meta.append(" ");
    var time = meta.appendChild(el("time"));
    time.dateTime = data.published || "";
    refreshTime(time);
    if (marked) meta.append(" ", el("span", "updated-mark", "updated"));
    var title = article.appendChild(el("h2", "title"));
    title.id = "title-" + data.id;
    var link = safeUrl(data.link, ["http:", "https:"]);
    if (link) {
      var a = title.appendChild(el("a", "", data.title || "(untitled)"));
      a.href = link;
      a.rel = "noopener noreferrer";
      a.target = "_blank";
    } else {
      title.textContent = data.title || "(untitled)";
    }
    article.appendChild(el("div", "summary")).appendChild(summaryFragment(data.summary_html));
    var foot = article.appendChild(el("p", "foot"));
    if (data.author && data.feed) foot.append(el("span", "author", data.author), " · ");
    var permalink = foot.appendChild(el("a", "permalink", "Permalink"));
    permalink.href = base + "entries/" + encodeURIComponent(data.id) + "/";
    permalink.setAttribute("aria-describedby", title.id);
    return article;
  }

  // --- Relative times that stay current; the exact local time on hover.
  function refreshTime(node) {
    var when = new Date(node.dateTime);
    if (!node.dateTime || isNaN(when)) return;
    var minutes = Math.round((Date.now() - when) / 60000);
    node.textContent = minutes < 1 ? "just now"
      : minutes < 60 ? minutes + " min ago"
      : minutes < 1440 ? Math.round(minutes / 60) + " h ago"
      : when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    node.title = when.toLocaleString([], { dateStyle: "full", timeStyle: "long" });
  }
  function refreshTimes() { list.querySelectorAll("time").forEach(refreshTime); }
  refreshTimes();
  setInterval(refreshTimes, 20000);

  // --- Keeping the reader's place: whatever changes above, the first entry in view stays put.
  function scrolledAway() { return window.scrollY > list.offsetTop; }

  function keepPlace(change, skip) { // skip: the nodes about to go, which cannot anchor
    var top = statusBox.closest("header").getBoundingClientRect().bottom, anchor = null;
    for (var node = list.firstElementChild; node && !anchor; node = node.nextElementSibling) {
      if (!(skip && skip.indexOf(node) >= 0) && node.getBoundingClientRect().bottom > top) anchor = node;
    }
    var before = anchor && anchor.getBoundingClientRect().top;
    var replacement = change();
    if (anchor && !anchor.isConnected) anchor = replacement;
    if (anchor && anchor.isConnected && window.scrollY > 0) window.scrollBy(0, anchor.getBoundingClientRect().top - before);
  }

  // --- Applying events
  function apply(message) {
    var data = message.entry;
    if (message.cursor) cursor = message.cursor;
    if (message.blog) blogChanged(message.blog);
    if (message.type === "source.removed") {
      var gone = [].slice.call(list.querySelectorAll('[data-feed="' + Number(message.feed.id) + '"]'));
      if (gone.length && !single) keepPlace(function () { gone.forEach(function (node) { node.remove(); }); }, gone);
    }
    if (!data || (feedId && String((data.feed || {}).id) !== feedId)) return;
    var existing = $("entry-" + data.id);
    if (message.type === "entry.deleted") {
      if (!existing) return;
      if (single) existing.replaceChildren(el("p", "removed-note", "This entry was removed by the editors."));
      else keepPlace(function () { existing.remove(); }, [existing]);
      return;
    }
    if (existing) {
      var marked = message.type === "entry.updated" || data.corrected || !!existing.querySelector(".updated-mark");
      var fresh = render(data, marked, existing.dataset.cursor);
      keepPlace(function () { existing.replaceWith(fresh); return fresh; });
      return;
    }
    if (single) return;
    var top = list.firstElementChild;
    // An older entry (a new source's) goes in its place.
    if (message.type === "entry.created" && !(top && top.dataset.cursor && Number(data.position) < Number(top.dataset.cursor))) arrived(data, data.position);
    else reinstate(data);
  }

  // The blog changed: its header says so; once ended, the page stops listening.
  function blogChanged(info) {
    var box = $("blog-state") || {};
    if ($("blog-title")) $("blog-title").textContent = info.title;
    ended = info.state === "ended";
    if (box.dataset && info.state !== box.dataset.state) {
      box.dataset.state = info.state;
      announcer.textContent = box.textContent = ended ? "This live blog has ended." : LABELS[info.state] || "Scheduled";
    }
  }


  // An update to an entry this page does not show: one the editors restored. It goes back in its
  // place if that place is within the stretch of the list held here; else history brings it.
  function reinstate(data) {
    var position = Number(data.position), next = list.firstElementChild;
    while (next && !(Number(next.dataset.cursor) < position)) next = next.nextElementSibling;
    if (!next && olderUrl) return; // below the end: "Older entries" loads it in its turn
    if (next === list.firstElementChild && detached) return; // above the cut: "Newest entries" reloads
    var empty = $("empty");
    if (empty) empty.remove();
    var article = render(data, !!data.corrected, data.position);
    keepPlace(function () { list.insertBefore(article, next); });
    trim();
  }

  function arrived(data, position) {
    var away = scrolledAway();
    if (away || document.hidden || detached) unseen += 1;
    announce(data);
    if (!detached) {
      var empty = $("empty");
      if (empty) empty.remove();
      var article = render(data, !!data.corrected, position);
      article.classList.add("fresh");
      if (away) keepPlace(function () { list.prepend(article); });
      else list.prepend(article);
      trim();
    }
    showUnseen();
  }

  // Bounded DOM: drop the end of the list farther from the reader, in one go (scroll offsets are
  // rounded: compensating entry by entry would drift).
  function trim() {
    var extra = list.children.length - MAX_ENTRIES;
    if (extra <= 0) return;
    var box = list.getBoundingClientRect(), fromTop = -box.top > box.bottom - window.innerHeight;
    var gone = fromTop ? [].slice.call(list.children, 0, extra) : [].slice.call(list.children, -extra);
    if (fromTop) {
      keepPlace(function () { gone.forEach(function (node) { node.remove(); }); }, gone);
      detached = true;
    } else {
      gone.forEach(function (node) { node.remove(); });
      olderUrl = api(list.lastElementChild.dataset.cursor);
      showOlder();
    }
  }

  function announce(data) {
    heard.push(data);
    clearTimeout(announceTimer);
    announceTimer = setTimeout(function () {
      announcer.textContent = heard.length === 1
        ? "New entry from " + ((heard[0].feed || {}).title || heard[0].author) + ": " + (heard[0].title || "(untitled)")
        : heard.length + " new entries";
      heard = [];
    }, 1000);
  }

  function showUnseen() {
    if (single) return;
    var away = scrolledAway();
    if (!away && !document.hidden && !detached) unseen = 0;
    var label = unseen ? unseen + (unseen === 1 ? " new entry" : " new entries") : "Newest entries";
    var title = unseen && document.hidden ? "(" + unseen + ") " + baseTitle : baseTitle;
    newButton.hidden = !(detached || (unseen && away));
    if (newButton.textContent !== label) newButton.textContent = label;
    if (document.title !== title) document.title = title;
  }

  function toTop() {
    var smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    window.scrollTo({ top: 0, behavior: smooth ? "smooth" : "auto" });
    list.firstElementChild.focus({ preventScroll: true });
  }

  // --- History: older entries load as the reader nears the end of the list.
  // One link element throughout, so a keyboard user's focus on it is never lost.
  var olderLink = $("older") || el("a");
  olderLink.id = "older";
  function showOlder() {
    if (!olderUrl) {
      olderBox.textContent = list.querySelector(".entry") ? "No older entries." : "";
      return;
    }
    if (!olderLink.isConnected) olderBox.replaceChildren(olderLink);
    olderLink.textContent = "Older entries";
    var before = new URL(olderUrl, location.href).searchParams.get("before");
    olderLink.href = "/?" + new URLSearchParams(feedId ? { before: before, feed: feedId } : { before: before });
    if (observer) { observer.unobserve(olderLink); observer.observe(olderLink); } // still in view: go on
  }

  function loadOlder(focus) {
    if (!olderUrl) return;
    // A reader on the link (keyboard) goes on to the first entry that comes in.
    wantFocus = wantFocus || focus || document.activeElement === olderLink;
    if (loading) return;
    loading = true;
    olderLink.textContent = "Loading…";
    getJSON(olderUrl).then(function (page) {
      var first = null;
      page.items.forEach(function (item) {
        if ($("entry-" + item.entry.id)) return;
        var article = list.appendChild(render(item.entry, !!item.entry.corrected, item.cursor));
        first = first || article;
      });
      olderUrl = page.next;
      trim();
      loading = false;
      showOlder();
      if (wantFocus && first) first.focus();
      wantFocus = false;
    }, function () {
      loading = false;
      olderLink.textContent = "Couldn’t load older entries. Try again";
    });
  }

  var observer = window.IntersectionObserver && !single && new IntersectionObserver(function (seen) {
    if (seen.some(function (e) { return e.isIntersecting; })) loadOlder(false);
  }, { rootMargin: "0px 0px 600px 0px" });
  if (olderBox) {
    olderBox.addEventListener("click", function (event) {
      if (event.target.id !== "older" || event.button || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      loadOlder(true);
    });
    if (olderLink.isConnected && observer) observer.observe(olderLink);
  }

  // --- The newest entries, for a feed or all: replaces the list, then follows the socket from
  // the cursor the server read before the list, so nothing is missed in between.
  var loads = 0;
  function loadNewest() {
    var load = ++loads; // arrow keys on the filter fire one change per press: the last one wins
    disconnect();
    return getJSON(api("")).then(function (page) {
      if (load !== loads) return;
      list.replaceChildren();
      window.scrollTo(0, 0); // a new list starts at its top (and the older link is out of view)
      page.items.forEach(function (item) { list.appendChild(render(item.entry, !!item.entry.corrected, item.cursor)); });
      if (!page.items.length) list.appendChild(el("p", "empty", "No entries yet. New ones appear here as soon as a feed publishes them.")).id = "empty";
      var newer = document.querySelector(".newer"), url = new URL(location.href);
      if (newer) newer.remove();
      if (url.searchParams.has("before")) {
        url.searchParams.delete("before");
        history.replaceState(null, "", url);
      }
      olderUrl = page.next;
      cursor = page.cursor || cursor;
      detached = false;
      unseen = 0;
      showOlder();
      showUnseen();
    }).catch(function () { /* keep what is shown; the socket still heals */ }).then(function () {
      if (load === loads) connect();
    });
  }

  function setFeed(id, push) {
    feedId = id || "";
    var url = new URL(location.href);
    if (feedId) url.searchParams.set("feed", feedId); else url.searchParams.delete("feed");
    if (push) history.pushState(null, "", url);
    if (filter) filter.value = feedId;
    var name = feedId && filter && filter.selectedIndex > 0 ? filter.options[filter.selectedIndex].text : "";
    baseTitle = (name ? name + " · " : "") + "Livelog";
    announcer.textContent = "Showing " + (name || "all sources");
    return loadNewest();
  }

  if (!single) {
    newButton.addEventListener("click", function () {
      if (detached) loadNewest().then(function () { list.firstElementChild.focus(); });
      else { unseen = 0; toTop(); showUnseen(); }
    });
    window.addEventListener("scroll", showUnseen, { passive: true });
    if (filter) filter.addEventListener("change", function () { setFeed(filter.value, true); });
    list.addEventListener("click", function (event) {
      var source = event.target.closest("a.source");
      if (!source || event.button || event.ctrlKey || event.metaKey || event.shiftKey) return;
      event.preventDefault();
      setFeed(new URL(source.href).searchParams.get("feed"), true);
    });
    window.addEventListener("popstate", function () { setFeed(new URL(location.href).searchParams.get("feed"), false); });
  }
  document.addEventListener("visibilitychange", function () {
    showUnseen();
    if (!document.hidden) {
      refreshTimes();
      if (!socket) { attempt = 0; connect(); }
    }
  });

  // --- The socket: resume from the last cursor, back off with jitter, say what state we are in.
  var LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline", ended: "Ended" };
  function setState(state) {
    statusBox.hidden = false; // without script there is no live state to show
    statusBox.dataset.state = state;
    statusLabel.textContent = LABELS[state];
    retryButton.hidden = state !== "offline";
  }

  function connect() {
    disconnect();
    if (ended) { setState("ended"); return; }
    if (!navigator.onLine) { setState("offline"); return; }
    var query = new URLSearchParams({ after: cursor });
    if (feedId) query.set("feed", feedId);
    if (blog) query.set("blog", blog);
    var ws = socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/?" + query);
    setState(attempt ? (attempt >= 5 ? "offline" : "reconnecting") : "connecting");
    ws.onopen = function () {
      if (ws !== socket) return;
      attempt = 0;
      setState("live");
    };
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; /* one bad message must not stop the page */ }
      // `prev` is the change before this one in our stream: beyond our cursor, something never
      // reached us. Resume from the cursor: the replay brings the missing change and this one.
      if (message.prev && cursor && Number(message.prev) > Number(cursor)) {
        connect();
        return;
      }
      try { apply(message); } catch (e) { /* one bad message must not stop the page */ }
      document.dispatchEvent(new CustomEvent("livelog:message", { detail: message }));
      if (ended) connect();
    };
    ws.onclose = function (event) {
      if (ws !== socket) return; // replaced or closed on purpose
      socket = null;
      attempt += 1;
      // After 4008 (this reader fell behind) resume at once; else back off: 0.5 s doubling to 30 s.
      var delay = event.code === 4008 && attempt === 1 ? 0 : Math.min(30000, 500 * Math.pow(2, attempt - 1));
      setState(attempt >= 5 || !navigator.onLine ? "offline" : "reconnecting");
      retryTimer = setTimeout(connect, delay * (0.5 + Math.random()));
    };
  }

  function disconnect() {
    clearTimeout(retryTimer);
    var ws = socket;
    socket = null;
    if (ws) ws.close();
  }

  retryButton.addEventListener("click", function () { attempt = 0; connect(); });
  window.addEventListener("online", function () { if (!socket) { attempt = 0; connect(); } });
  window.addEventListener("offline", function () { disconnect(); setState("offline"); });
  showUnseen();
  connect();
})();

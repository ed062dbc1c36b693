// /blogs/: each blog's newest entry, kept current from the live socket (every source's entries).
// Text reaches the DOM only through textContent and checked attribute values.
(function () {
  "use strict";
  var list = document.getElementById("blog-list");
  if (!list) return;
  var cursor = list.dataset.cursor || "", attempt = 0, socket = null;
  var statusBox = document.getElementById("status"), label = statusBox.querySelector(".label");

  function setState(state, text) {
    statusBox.hidden = false;
    statusBox.dataset.state = state;
    label.textContent = text;
  }

  function show(card, data) {
    var line = card.querySelector(".newest"), link = document.createElement("a");
    link.href = "/blogs/" + encodeURIComponent(card.dataset.blog) + "/entries/" + encodeURIComponent(data.id) + "/";
    link.textContent = data.title || "(untitled)";
    var source = document.createElement("span");
    source.className = "source";
    source.textContent = data.feed ? data.feed.title : "";
    var time = document.createElement("time");
    time.dateTime = data.published || "";
    time.textContent = "just now";
    line.replaceChildren("Newest: ", link, " · ", source, " · ", time);
  }

  function connect() {
    var ws = socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/?" + new URLSearchParams({ after: cursor }));
    setState(attempt ? "reconnecting" : "connecting", attempt ? "Reconnecting…" : "Connecting…");
    ws.onopen = function () { attempt = 0; setState("live", "Live"); };
    ws.onmessage = function (event) {
      var message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (message.prev && cursor && Number(message.prev) > Number(cursor)) { ws.close(); return; }
      if (message.cursor) cursor = message.cursor;
      if (message.type !== "entry.created" || !message.entry || !message.entry.feed) return;
      var feed = String(message.entry.feed.id);
      list.querySelectorAll(".blog-card").forEach(function (card) {
        if (card.dataset.state !== "ended" && card.dataset.feeds.split(" ").indexOf(feed) >= 0) show(card, message.entry);
      });
    };
    ws.onclose = function () {
      if (ws !== socket) return;
      attempt += 1;
      setState("reconnecting", "Reconnecting…");
      setTimeout(connect, Math.min(30000, 500 * Math.pow(2, attempt - 1)) * (0.5 + Math.random()));
    };
  }
  connect();
})();

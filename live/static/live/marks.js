// A live blog's pinned block and key events, kept current from the page's own socket: live.js
// announces every message it applied as a "livelog:message" event. Nothing here parses HTML: a
// pinned copy is a clone of the entry's node in the list (already built by live.js's sanitizer).
(function () {
  "use strict";
  var pinned = document.getElementById("pinned"), box = document.getElementById("pinned-entries");
  var keys = document.getElementById("key-events"), keyList = document.getElementById("key-events-list");
  var list = document.getElementById("entries");
  if (!pinned || !keys || !list) return;
  var MAX_PINS = 3;

  // Whatever changes above, the first entry in view stays where it is.
  function keepPlace(change) {
    var anchor = null, header = document.querySelector(".top");
    var top = header ? header.getBoundingClientRect().bottom : 0;
    var candidates = list.children;
    for (var i = 0; i < candidates.length && !anchor; i++) {
      if (candidates[i].getBoundingClientRect().bottom > top) anchor = candidates[i];
    }
    var before = anchor && anchor.getBoundingClientRect().top;
    change();
    if (anchor && anchor.isConnected && window.scrollY > 0) window.scrollBy(0, anchor.getBoundingClientRect().top - before);
  }

  function el(tag, text) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var base = list.dataset.blog ? "/blogs/" + encodeURIComponent(list.dataset.blog) + "/" : "/";
  function permalink(id) { return base + "entries/" + encodeURIComponent(id) + "/"; }

  function pinnedCopy(data) {
    var original = document.getElementById("entry-" + data.id), copy;
    if (original) {
      copy = original.cloneNode(true);
      copy.querySelectorAll("[id]").forEach(function (node) { node.id = "pinned-" + node.id; });
      copy.querySelectorAll("[aria-describedby],[aria-labelledby]").forEach(function (node) {
        ["aria-describedby", "aria-labelledby"].forEach(function (name) {
          if (node.hasAttribute(name)) node.setAttribute(name, "pinned-" + node.getAttribute(name));
        });
      });
      copy.querySelectorAll(".tools").forEach(function (node) { node.remove(); });
      copy.removeAttribute("tabindex");
      copy.setAttribute("aria-labelledby", "pinned-title-" + data.id);
    } else {
      // Not on this page (an older entry): its title, time and permalink.
      copy = el("article");
      var meta = copy.appendChild(el("p"));
      meta.className = "meta";
      meta.appendChild(el("span", data.feed ? data.feed.title : data.author)).className = "source";
      var title = copy.appendChild(el("h3"));
      title.className = "title";
      title.id = "pinned-title-" + data.id;
      var link = title.appendChild(el("a", data.title || "(untitled)"));
      link.href = permalink(data.id);
      copy.setAttribute("aria-labelledby", title.id);
    }
    copy.className = "entry pinned-entry";
    copy.dataset.kind = data.kind;
    copy.id = "pinned-" + data.id;
    copy.dataset.id = data.id;
    copy.dataset.pinnedAt = data.pinned_at || "";
    return copy;
  }

  function updatePins(data, gone) {
    var existing = document.getElementById("pinned-" + data.id);
    if (!existing && (gone || !data.pinned)) return;
    keepPlace(function () {
      if (existing) existing.remove();
      if (!gone && data.pinned) {
        var copy = pinnedCopy(data), next = null;
        // Newest pin first.
        [].some.call(box.children, function (node) {
          if ((node.dataset.pinnedAt || "") < copy.dataset.pinnedAt) { next = node; return true; }
          return false;
        });
        box.insertBefore(copy, next);
        while (box.children.length > MAX_PINS) box.lastElementChild.remove();
      }
      pinned.hidden = !box.children.length;
    });
  }

  function updateKeys(data, gone) {
    var existing = keyList.querySelector('li[data-id="' + Number(data.id) + '"]');
    if (!existing && (gone || !data.key_event)) return;
    keepPlace(function () {
      if (gone || !data.key_event) {
        existing.remove();
      } else {
        var item = el("li");
        item.dataset.id = data.id;
        item.dataset.position = data.position;
        var link = item.appendChild(el("a", data.title || "(untitled)"));
        link.href = permalink(data.id);
        var time = el("time", new Date(data.published).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
        time.dateTime = data.published || "";
        item.append(" ", time);
        if (existing) existing.replaceWith(item);
        else {
          var next = null; // newest first, by place in the stream
          [].some.call(keyList.children, function (node) {
            if (Number(node.dataset.position) < Number(data.position)) { next = node; return true; }
            return false;
          });
          keyList.insertBefore(item, next);
        }
      }
      keys.hidden = !keyList.children.length;
    });
  }

  // The marks an item carries, as the server renders them (styles and the editors' tools read them).
  function markItem(data) {
    var node = document.getElementById("entry-" + data.id);
    if (!node) return;
    node.dataset.kind = data.kind;
    node.toggleAttribute("data-pinned", !!data.pinned);
    node.toggleAttribute("data-key-event", !!data.key_event);
  }

  document.addEventListener("livelog:message", function (event) {
    var message = event.detail, data = message && message.entry;
    if (!data) return;
    var gone = message.type === "entry.deleted";
    markItem(data);
    updatePins(data, gone);
    updateKeys(data, gone);
  });

  // A key event's link scrolls to the entry when the page shows it, and opens its permalink if not.
  keyList.addEventListener("click", function (event) {
    var link = event.target.closest("a"), item = link && link.closest("li");
    var target = item && document.getElementById("entry-" + item.dataset.id);
    if (!target || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    target.scrollIntoView({ block: "start" });
    target.focus({ preventScroll: true });
  });
})();

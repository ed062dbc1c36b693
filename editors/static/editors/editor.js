// The editor's tools on a live blog's page, sent only to signed-in editors: the compose box
// (Ctrl/Cmd+Enter publishes, a preview, errors in place), actions on every item (edit, delete, pin,
// key event) and the moderation queue. Everything goes through the write API with the session and
// its CSRF token; what changes comes back to this page, like to every reader's, over the socket.
(function () {
  "use strict";
  var root = document.getElementById("editor"), list = document.getElementById("entries");
  if (!root || !list) return;
  var api = root.dataset.api;
  var form = document.getElementById("compose");
  var csrf = document.querySelector("#editor input[name=csrfmiddlewaretoken]");
  csrf = csrf ? csrf.value : (document.cookie.match(/(?:^|; )csrftoken=([^;]+)/) || [])[1] || "";

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function call(method, path, body) {
    var options = { method: method, credentials: "same-origin", headers: { "X-CSRFToken": csrf, Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(api + path, options).then(function (response) {
      if (response.status === 204) return null;
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) throw new Error(data.error || "the server answered " + response.status);
        return data;
      });
    }, function () { throw new Error("the server cannot be reached; nothing was changed"); });
  }

  // --- Compose (and edit) a post
  if (form) {
    var title = document.getElementById("compose-title"), body = document.getElementById("compose-body");
    var error = document.getElementById("compose-error"), preview = document.getElementById("compose-preview");
    var publish = document.getElementById("compose-publish"), cancel = document.getElementById("compose-cancel");
    var previewButton = document.getElementById("compose-preview-button");
    var editing = null, busy = false;

    var reset = function () {
      editing = null;
      form.reset();
      publish.textContent = "Publish";
      cancel.hidden = true;
      preview.hidden = true;
      preview.replaceChildren();
    };
    var fail = function (e) { error.textContent = "Not published: " + e.message; };

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      error.textContent = "";
      if (!body.value.trim()) {
        error.textContent = "Write something first: the post is empty.";
        body.focus();
        return;
      }
      busy = true;
      publish.disabled = true;
      var content = { title: title.value, body: body.value };
      var done = editing ? call("PATCH", "posts/" + editing + "/", content) : call("POST", "posts/", content);
      done.then(function () { reset(); body.focus(); }, fail).then(function () {
        busy = false;
        publish.disabled = false;
      });
    });
    form.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    previewButton.addEventListener("click", function () {
      error.textContent = "";
      call("POST", "preview", { title: title.value, body: body.value }).then(function (data) {
        preview.replaceChildren(window.livelogFragment(data.summary_html));
        preview.hidden = false;
      }, function (e) { error.textContent = "No preview: " + e.message; });
    });
    cancel.addEventListener("click", function () { reset(); body.focus(); });

    var edit = function (id) {
      call("GET", "posts/" + id + "/").then(function (data) {
        editing = id;
        title.value = data.entry.title;
        body.value = data.body;
        publish.textContent = "Save changes";
        cancel.hidden = false;
        form.scrollIntoView({ block: "center" });
        body.focus();
      }, fail);
    };
  }

  // --- Actions on every item of the list
  function toggle(article, name, on, off) {
    return article.hasAttribute(name) ? off : on;
  }

  function addTools(article) {
    if (!article.classList.contains("entry") || article.querySelector(".tools")) return;
    var id = article.dataset.id, tools = el("div", undefined, "tools"), status = el("span", "", "tool-status");
    status.setAttribute("role", "status");
    var button = function (label, action) {
      var b = tools.appendChild(el("button", label));
      b.type = "button";
      b.dataset.action = action;
      return b;
    };
    if (root.dataset.mark !== undefined) {
      button(toggle(article, "data-pinned", "Pin", "Unpin"), toggle(article, "data-pinned", "pin", "unpin"));
      button(toggle(article, "data-key-event", "Key event", "Not a key event"), toggle(article, "data-key-event", "key-event", "unkey-event"));
    }
    if (form && article.dataset.kind === "post") {
      button("Edit", "edit");
      button("Delete", "delete");
    }
    if (!tools.children.length) return;
    tools.setAttribute("aria-label", "Editor's actions");
    tools.appendChild(status);
    article.appendChild(tools);
  }

  list.addEventListener("click", function (event) {
    var b = event.target.closest(".tools button");
    if (!b) return;
    var article = b.closest(".entry"), id = article.dataset.id, action = b.dataset.action;
    var status = article.querySelector(".tool-status");
    status.textContent = "";
    if (action === "edit") return edit(id);
    if (action === "delete" && !b.dataset.armed) {
      // Two steps rather than a dialog: press again to delete.
      b.dataset.armed = "1";
      b.textContent = "Press again to delete";
      return;
    }
    var request = action === "delete" ? call("DELETE", "posts/" + id + "/") : call("POST", "entries/" + id + "/" + action);
    b.disabled = true;
    request.then(function () { status.textContent = "Done."; }, function (e) {
      status.textContent = "Not done: " + e.message;
      b.disabled = false;
    });
  });

  list.querySelectorAll(".entry").forEach(addTools);
  // live.js replaces an item when it changes: the new node gets its tools.
  new MutationObserver(function (records) {
    records.forEach(function (record) {
      record.addedNodes.forEach(function (node) { if (node.nodeType === 1) addTools(node); });
    });
  }).observe(list, { childList: true });

  // --- The moderation queue, with its count kept current
  var queue = document.getElementById("queue");
  if (queue) {
    var count = document.getElementById("queue-count"), items = document.getElementById("queue-list");
    var queueError = document.getElementById("queue-error");
    var refresh = function () {
      return call("GET", "queue/").then(function (data) {
        count.textContent = data.count;
        queueError.textContent = "";
        var focused = document.activeElement && items.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
        items.replaceChildren.apply(items, data.items.map(function (entry) {
          var item = el("li");
          item.dataset.id = entry.id;
          item.append(el("span", entry.feed.title, "source"), " ", el("span", entry.title || "(untitled)", "title"), " ");
          ["approve", "reject"].forEach(function (decision) {
            var b = item.appendChild(el("button", decision === "approve" ? "Approve" : "Reject"));
            b.type = "button";
            b.dataset.decision = decision;
            b.dataset.focusKey = decision + entry.id;
            b.setAttribute("aria-label", (decision === "approve" ? "Approve: " : "Reject: ") + (entry.title || "(untitled)"));
            item.append(" ");
          });
          return item;
        }));
        if (focused) {
          var again = items.querySelector('[data-focus-key="' + focused + '"]');
          if (again) again.focus();
        }
      }, function (e) { queueError.textContent = "The queue cannot be read: " + e.message; });
    };
    items.addEventListener("click", function (event) {
      var b = event.target.closest("button[data-decision]");
      if (!b) return;
      b.disabled = true;
      call("POST", "queue/" + b.closest("li").dataset.id + "/" + b.dataset.decision).then(refresh, function (e) {
        queueError.textContent = "Not done: " + e.message;
        b.disabled = false;
      });
    });
    refresh();
    setInterval(function () { if (!document.hidden) refresh(); }, 3000);
  }
})();

// The live feed's progressive enhancement: new changes, rendered by the
// server as table rows, are prepended as they happen. Without this
// script the page shows the latest changes on each load.
(function () {
  "use strict";
  var list = document.getElementById("changes");
  var status = document.getElementById("live-status");
  if (!list || !window.EventSource) {
    return;
  }
  var maxRows = 200;
  var url = list.getAttribute("data-events");
  var after = list.getAttribute("data-after");
  if (after) {
    url += "?after=" + encodeURIComponent(after);
  }
  var source = new EventSource(url);
  source.addEventListener("open", function () {
    status.textContent = "live";
  });
  source.addEventListener("error", function () {
    status.textContent = source.readyState === EventSource.CLOSED ? "disconnected: reload the page" : "reconnecting";
  });
  source.addEventListener("change", function (e) {
    var t = document.createElement("template");
    t.innerHTML = e.data; // escaped by the server's html/template
    var row = t.content.firstElementChild;
    if (!row || document.getElementById(row.id)) {
      return;
    }
    list.insertBefore(row, list.firstElementChild);
    while (list.children.length > maxRows) {
      list.removeChild(list.lastElementChild);
    }
  });
})();

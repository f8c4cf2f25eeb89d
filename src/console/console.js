// replyfix console: refreshes the status page's live part in place while
// the page is visible and "live" is ticked. The page works without it.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var box = document.getElementById("autorefresh");
  if (!live || !box) {
    return;
  }
  box.parentNode.hidden = false;
  var every = Number(live.getAttribute("data-refresh")) || 2;
  var busy = false;
  setInterval(function () {
    if (busy || document.hidden || !box.checked) {
      return;
    }
    busy = true;
    fetch(location.pathname, { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        return r.ok ? r.text() : null;
      })
      .then(function (text) {
        if (text === null) {
          return;
        }
        var next = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        if (next) {
          live.replaceWith(next);
          live = next;
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
      });
  }, every * 1000);
})();

// The dashboard's one script: while an instance runs, its page asks for its live part
// every poll-ms and puts it in place (polling, not server-sent events: see README).
"use strict";
(function () {
  function poll() {
    var live = document.getElementById("live");
    if (!live || live.dataset.finished === "true") return;
    var every = parseInt(live.dataset.pollMs, 10) || 1000;
    setTimeout(function () {
      fetch(live.dataset.live, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.text();
        })
        .then(function (html) {
          var holder = document.createElement("div");
          holder.innerHTML = html;
          var fresh = holder.querySelector("#live");
          if (fresh) live.replaceWith(fresh);
          poll();
        })
        .catch(function () { setTimeout(poll, every * 4); });  // the server restarting
    }, every);
  }
  document.addEventListener("DOMContentLoaded", poll);
})();

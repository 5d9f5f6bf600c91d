// fanzha review console: keyboard shortcuts, click-to-reveal images, and a clear message when a picture fails.
// Our own code, no libraries. j/k move (in a queue, and from case to case), o/Enter open, c confirm, r reject.
(function () {
  "use strict";
  var page = document.body.getAttribute("data-page");
  var ORDER_KEY = "fanzha-console-queue";

  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  // reviewer wellness: pictures stay blurred until clicked
  document.querySelectorAll(".blur-wrap").forEach(function (w) {
    w.addEventListener("click", function () { w.classList.toggle("blurred"); });
    var img = w.querySelector("img");
    if (img) {
      img.addEventListener("error", function () {
        w.classList.add("hidden");
        var msg = w.parentNode.querySelector(".media-problem");
        if (msg) { msg.classList.remove("hidden"); }
      });
    }
  });

  if (page === "queues") {
    var rows = Array.prototype.slice.call(document.querySelectorAll("tr.row"));
    var at = rows.length ? 0 : -1;
    try {
      sessionStorage.setItem(ORDER_KEY, JSON.stringify({
        list: rows.map(function (r) { return r.getAttribute("data-href"); }), queue: location.href }));
    } catch (err) { /* storage off: j/k on the case page just do nothing */ }
    function select(i) {
      if (!rows.length) { return; }
      at = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach(function (r) { r.classList.remove("selected"); });
      rows[at].classList.add("selected");
      rows[at].scrollIntoView({ block: "nearest" });
    }
    select(0);
    rows.forEach(function (r, i) {
      r.addEventListener("click", function (e) { if (e.target.tagName !== "A") { location.href = r.getAttribute("data-href"); } });
      r.addEventListener("mouseenter", function () { select(i); });
    });
    document.addEventListener("keydown", function (e) {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey || at < 0) { return; }
      var href = rows[at].getAttribute("data-href");
      if (e.key === "j") { select(at + 1); }
      else if (e.key === "k") { select(at - 1); }
      else if (e.key === "o" || e.key === "Enter") { location.href = href; }
      else if (e.key === "c") { location.href = href + "#confirm"; }
      else if (e.key === "r") { location.href = href + "#reject"; }
      else { return; }
      e.preventDefault();
    });
  }

  if (page === "case") {
    function choose(decision) {
      var radio = document.getElementById("decision-" + decision);
      if (!radio) { return; }
      radio.checked = true;
      var reason = document.getElementById("reason");
      if (reason) { reason.focus(); }
    }
    if (location.hash === "#confirm") { choose("confirm"); }
    if (location.hash === "#reject") { choose("reject"); }
    var order = null;
    try { order = JSON.parse(sessionStorage.getItem(ORDER_KEY) || "null"); } catch (err) { order = null; }
    var here = order ? order.list.indexOf(location.pathname) : -1;
    var nav = document.getElementById("case-nav");
    if (nav && here >= 0) { nav.textContent = (here + 1) + " / " + order.list.length + " · j 下一条 next · k 上一条 previous"; }
    document.addEventListener("keydown", function (e) {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) { return; }
      if (e.key === "c") { choose("confirm"); }
      else if (e.key === "r") { choose("reject"); }
      else if (e.key === "e") { choose("escalate"); }
      else if (e.key === "j" && here >= 0 && here + 1 < order.list.length) { location.href = order.list[here + 1]; }
      else if (e.key === "k" && here > 0) { location.href = order.list[here - 1]; }
      else { return; }
      e.preventDefault();
    });
  }
})();

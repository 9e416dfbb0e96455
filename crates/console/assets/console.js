// Progressive enhancement only: every flow works without this file.
// Copy buttons, confirmation dialogs, a live payload preview, a live log
// and live recover progress. No inline script anywhere (CSP script-src 'self').
(function () {
  "use strict";

  document.addEventListener("click", function (e) {
    var button = e.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) e.preventDefault();
  });

  // The preview follows the hierarchy and the chosen type.
  var preview = document.getElementById("preview");
  if (preview) {
    var update = function () {
      var type = document.getElementById("preview-type").value;
      var flat = document.getElementById("layout-flat");
      var layout = flat && flat.checked ? "flat" : "envelope";
      var url = preview.getAttribute("data-preview-url") + "?type=" + encodeURIComponent(type) + "&layout=" + layout;
      fetch(url, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) { if (text !== null) preview.textContent = text; });
    };
    ["preview-type", "layout-envelope", "layout-flat"].forEach(function (id) {
      var el = document.getElementById(id);
      if (el) el.addEventListener("change", update);
    });
    var show = document.getElementById("show-preview");
    if (show) show.hidden = true;
  }

  // The newest page of an unfiltered log refreshes itself.
  function refresh(selector, every) {
    var el = document.querySelector(selector);
    if (!el) return;
    setInterval(function () {
      if (document.hidden || el.contains(document.activeElement)) return;
      fetch(location.href, { credentials: "same-origin" }).then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").querySelector(selector);
          // Never pull the rows from under a keyboard user's focus.
          if (!fresh || el.contains(document.activeElement) || fresh.innerHTML === el.innerHTML) return;
          el.innerHTML = fresh.innerHTML;
        });
    }, every);
  }
  if (document.querySelector("#delivery-log[data-live]")) refresh("#log-rows", 5000);
  if (document.querySelector("#recover-job[data-live-job=true]")) refresh("#recover-job", 2000);
})();

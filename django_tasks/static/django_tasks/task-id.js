// The copy buttons beside short task ids (admin/base.py short_id): copy the whole id.
(function () {
  "use strict";
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.task-id-copy") : null;
    if (!button) return;
    event.preventDefault();
    var text = button.dataset.taskId;
    function done() {
      button.dataset.copied = text;
      button.title = "Copied";
      setTimeout(function () { button.title = "Copy the whole id"; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else {
      fallback(text);
      done();
    }
  });
})();

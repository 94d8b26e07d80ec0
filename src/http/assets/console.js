// The console's one script. Every page works without it; with it, a file can be dropped
// anywhere on the import's drop zone, an import's page follows the job live, and the form
// builder's preview follows what is typed.
(function () {
  "use strict";

  var zone = document.querySelector("[data-drop-zone]");
  if (zone) {
    var input = zone.querySelector("input[type=file]");
    var chosen = zone.querySelector("[data-chosen]");
    var show = function () {
      if (chosen && input.files.length) chosen.textContent = input.files[0].name;
    };
    input.addEventListener("change", show);
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () {
        zone.classList.remove("dragging");
      });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer && event.dataTransfer.files.length) {
        input.files = event.dataTransfer.files;
        show();
      }
    });
  }

  // The form builder: the preview beside it follows what is typed, a moment after.
  var builder = document.querySelector("form[data-live-preview]");
  var previewButton = document.querySelector("[data-preview-button]");
  if (builder && previewButton && builder.requestSubmit) {
    var pending = null;
    var refresh = function () {
      window.clearTimeout(pending);
      pending = window.setTimeout(function () { builder.requestSubmit(previewButton); }, 700);
    };
    builder.addEventListener("input", refresh);
    builder.addEventListener("change", refresh);
    var language = document.getElementById("preview_locale");
    if (language) language.addEventListener("change", refresh);
  }

  var job = document.querySelector("[data-import-progress]");
  if (job) {
    var url = job.getAttribute("data-import-progress");
    var bar = job.querySelector("progress");
    var figures = job.querySelectorAll("[data-figure]");
    var poll = function () {
      fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (progress) {
          if (!progress) return;
          if (progress.expected) {
            bar.max = Math.max(progress.expected, progress.records);
            bar.value = progress.records;
          }
          figures.forEach(function (figure) {
            var value = progress[figure.getAttribute("data-figure")];
            if (value !== undefined && value !== null) figure.textContent = value;
          });
          // Once the job has ended, the page comes back whole, with its report.
          if (progress.status === "finished" || progress.status === "failed") {
            window.location.reload();
          } else {
            window.setTimeout(poll, 1000);
          }
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    };
    window.setTimeout(poll, 1000);
  }
})();

// Progressive enhancement of the upload page: classify through the JSON API
// without reloading, from the file picker, drag and drop, or an example.
// Without JavaScript the form posts to "/" and the server renders the result.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  const input = document.getElementById("audio_file");
  const dropzone = document.getElementById("dropzone");
  const status = document.getElementById("status");
  const errorBox = document.getElementById("error");
  const result = document.getElementById("result");
  const player = document.getElementById("player");
  let objectUrl = null;
  let busy = false;

  function percent(p) {
    return (100 * p).toFixed(1) + " %";
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    status.textContent = "";
  }

  function showResult(body, file) {
    document.getElementById("label").textContent = body.label;
    document.getElementById("file-name").textContent = file.name;
    document.getElementById("onset").textContent = (body.onset_seconds || 0).toFixed(2);
    const warnings = document.getElementById("warnings");
    warnings.replaceChildren(...body.warnings.map(function (text) {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    document.querySelectorAll("#bars .bar").forEach(function (bar) {
      const p = body.probabilities[bar.dataset.class] || 0;
      bar.querySelector(".bar-fill").style.width = (100 * p).toFixed(1) + "%";
      bar.querySelector(".bar-value").textContent = percent(p);
      bar.classList.toggle("top", bar.dataset.class === body.label);
    });
    if (body.chromagram_png) {
      document.getElementById("chromagram").src = body.chromagram_png;
    }
    if (objectUrl) {
      URL.revokeObjectURL(objectUrl);
    }
    objectUrl = URL.createObjectURL(file);
    player.src = objectUrl;
    player.hidden = false;
    result.hidden = false;
    status.textContent = "";
  }

  async function classify(file) {
    if (!file || busy) {
      return;
    }
    // The server refuses a larger body before reading it, and closes the
    // connection: say so here rather than "cannot reach the server".
    const maxBytes = Number(form.dataset.maxBytes);
    if (maxBytes && file.size > maxBytes) {
      showError(file.name + ": file too large (over " + (maxBytes / 1048576) + " MB)");
      return;
    }
    busy = true;
    errorBox.hidden = true;
    status.textContent = "Classifying " + file.name + " …";
    const data = new FormData();
    data.append("audio_file", file, file.name);
    try {
      const response = await fetch("/api/classify/instrument?chromagram=1", { method: "POST", body: data });
      let body = null;
      try {
        body = await response.json();
      } catch (ignored) {
        body = null;
      }
      if (!response.ok) {
        showError((body && body.error) || ("request failed: HTTP " + response.status));
      } else {
        showResult(body, file);
      }
    } catch (error) {
      showError("cannot reach the server: " + error.message);
    } finally {
      busy = false;
    }
  }

  form.addEventListener("submit", function (event) {
    // An example button submits the form too; those are handled below.
    if (event.submitter && event.submitter.classList.contains("example")) {
      return;
    }
    event.preventDefault();
    if (input.files.length) {
      classify(input.files[0]);
    } else {
      showError("choose an audio file first");
    }
  });

  input.addEventListener("change", function () {
    if (input.files.length) {
      classify(input.files[0]);
    }
  });

  ["dragenter", "dragover"].forEach(function (name) {
    dropzone.addEventListener(name, function (event) {
      event.preventDefault();
      dropzone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    dropzone.addEventListener(name, function () {
      dropzone.classList.remove("dragover");
    });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    const files = event.dataTransfer && event.dataTransfer.files;
    if (files && files.length) {
      classify(files[0]);
    }
  });

  document.querySelectorAll("button.example").forEach(function (button) {
    button.addEventListener("click", async function (event) {
      event.preventDefault();
      try {
        const response = await fetch(button.dataset.url);
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        const blob = await response.blob();
        classify(new File([blob], button.dataset.name, { type: blob.type }));
      } catch (error) {
        showError("cannot load the example: " + error.message);
      }
    });
  });
})();

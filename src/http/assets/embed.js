// consento's embedded form, enhanced: submits with fetch and shows the answer in place.
// Without this script (or when the request cannot be made, e.g. from an origin the form
// does not allow) the form posts as a plain HTML form and the person sees the answer page.
(function () {
  "use strict";
  function enhance(host) {
    var root = host.shadowRoot;
    // A snippet inserted by a script (innerHTML) gets no declared shadow root: attach it.
    var template = host.querySelector("template[shadowrootmode]");
    if (!root && template && host.attachShadow) {
      root = host.attachShadow({ mode: "open" });
      root.appendChild(template.content.cloneNode(true));
      template.remove();
    }
    if (!root) return;
    var form = root.querySelector("form");
    if (!form || form.dataset.enhanced) return;
    form.dataset.enhanced = "1";
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = { email: "", fields: {}, consents: [], partners: [] };
      var multi = {};
      Array.prototype.forEach.call(form.elements, function (input) {
        if (!input.name || input.disabled) return;
        if ((input.type === "checkbox" || input.type === "radio") && !input.checked) return;
        var name = input.name, value = input.value;
        if (name === "email") body.email = value;
        else if (name === "company") body.company = value;
        else if (name === "website") body.website = value;
        else if (name === "consent") body.consents.push(value);
        else if (name === "partner") body.partners.push(value);
        else if (input.type === "checkbox" && input.hasAttribute("data-multi")) {
          (multi[name] = multi[name] || []).push(value);
        } else if (input.type === "checkbox") body.fields[name] = true;
        else body.fields[name] = value;
      });
      Object.keys(multi).forEach(function (name) { body.fields[name] = multi[name]; });
      var button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      fetch(form.action, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept": "application/json" },
        body: JSON.stringify(body)
      }).then(function (response) {
        return response.json().then(function (answer) { return { status: response.status, answer: answer }; });
      }).then(function (result) {
        if (button) button.disabled = false;
        if (result.status === 200) return showDone(form, result.answer);
        if (result.status === 422 && result.answer.errors) return showErrors(form, result.answer);
        // The server answered (too many requests, a fault): say so; sending again as a
        // plain post could record the signup twice.
        showProblem(form, result.answer);
      }).catch(function () {
        // No answer at all (this origin is not allowed, or the network failed): the
        // request did not go, so the form posts as plain HTML.
        if (button) button.disabled = false;
        form.submit();
      });
    });
  }
  function showDone(form, answer) {
    var done = document.createElement("div");
    done.className = "result";
    done.setAttribute("role", "status");
    done.tabIndex = -1;
    done.textContent = answer.message;
    form.replaceWith(done);
    done.focus();
  }
  function showProblem(form, problem) {
    var box = form.querySelector(".result.live") || document.createElement("p");
    box.className = "result live";
    box.setAttribute("role", "alert");
    box.textContent = (problem && (problem.detail || problem.title)) || "The form could not be sent. Please try again later.";
    form.appendChild(box);
  }
  function showErrors(form, problem) {
    Array.prototype.forEach.call(form.querySelectorAll(".error.live"), function (e) { e.remove(); });
    Array.prototype.forEach.call(form.querySelectorAll("[aria-invalid]"), function (e) { e.removeAttribute("aria-invalid"); });
    var first = null;
    problem.errors.forEach(function (fault) {
      var name = fault.field.replace(/^fields\./, "").replace(/\[\d+\]$/, "");
      var name2 = name === "consents" ? "consent" : name === "partners" ? "partner" : name;
      var target = form.querySelector("#f-" + name2);
      if (!target) return;
      var message = document.createElement("p");
      message.className = "error live";
      message.id = "e-" + name2;
      message.textContent = fault.message;
      if (target.tagName !== "FIELDSET") target.setAttribute("aria-invalid", "true");
      target.setAttribute("aria-describedby", message.id);
      (target.tagName === "FIELDSET" ? target : target.parentNode).appendChild(message);
      if (!first) first = target.tagName === "FIELDSET" ? target.querySelector("input") : target;
    });
    if (first) first.focus();
  }
  function all() {
    Array.prototype.forEach.call(document.querySelectorAll(".consento-embed"), enhance);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", all);
  else all();
})();

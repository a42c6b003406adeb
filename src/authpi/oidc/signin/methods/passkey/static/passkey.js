// Passkeys on the hosted pages: runs the WebAuthn ceremony a page describes and posts its result.
// No build step and no dependency: served from the package under the issuer path, so the pages'
// CSP (script-src 'self') allows it. Everything else on the hosted pages works without JavaScript.
(function () {
  "use strict";

  function toBuffer(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(descriptors) {
    return (descriptors || []).map((d) => Object.assign({}, d, { id: toBuffer(d.id) }));
  }

  // The server's options are JSON (base64url for bytes); the browser API wants ArrayBuffers.
  function creationOptions(json) {
    return Object.assign({}, json, {
      challenge: toBuffer(json.challenge),
      user: Object.assign({}, json.user, { id: toBuffer(json.user.id) }),
      excludeCredentials: withIds(json.excludeCredentials),
    });
  }

  function requestOptions(json) {
    return Object.assign({}, json, {
      challenge: toBuffer(json.challenge),
      allowCredentials: withIds(json.allowCredentials),
    });
  }

  // The credential as the JSON the server parses (WebAuthn's RegistrationResponseJSON and
  // AuthenticationResponseJSON).
  function serialize(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toBase64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toBase64url(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(r.authenticatorData);
      response.signature = toBase64url(r.signature);
      if (r.userHandle) response.userHandle = toBase64url(r.userHandle);
    }
    return JSON.stringify({
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: response,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
    });
  }

  function postForm(action, fields) {
    const form = document.createElement("form");
    form.method = "post";
    form.action = action;
    for (const [name, value] of Object.entries(fields)) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = name;
      input.value = value;
      form.appendChild(input);
    }
    document.body.appendChild(form);
    form.submit();
  }

  // A ceremony page: <form data-passkey="get|create"> and its <script id="passkey-options">. What
  // the status line says comes translated in its data-* attributes (the page's language).
  function ceremonyPage(form) {
    const options = JSON.parse(document.getElementById("passkey-options").textContent);
    const button = form.querySelector("[data-passkey-start]");
    const status = form.querySelector("[data-passkey-status]");
    if (!window.PublicKeyCredential) {
      status.textContent = status.dataset.unsupported;
      button.disabled = true;
      return;
    }
    let busy = false;
    async function run() {
      if (busy) return;
      busy = true;
      button.disabled = true;
      status.textContent = status.dataset.waiting;
      try {
        const credential =
          form.dataset.passkey === "create"
            ? await navigator.credentials.create({ publicKey: creationOptions(options) })
            : await navigator.credentials.get({ publicKey: requestOptions(options) });
        form.elements.credential.value = serialize(credential);
        status.textContent = status.dataset.checking;
        form.submit();
      } catch (error) {
        busy = false;
        button.disabled = false;
        status.textContent =
          error && error.name === "NotAllowedError"
            ? status.dataset.cancelled
            : status.dataset.failed;
      }
    }
    button.addEventListener("click", run);
    run();
  }

  // The identifier page: offer the user's passkeys in the field's autofill (conditional UI).
  async function autofill(entry) {
    const field = document.querySelector('input[autocomplete~="webauthn"]');
    if (!field || !window.PublicKeyCredential || !PublicKeyCredential.isConditionalMediationAvailable) return;
    if (!(await PublicKeyCredential.isConditionalMediationAvailable())) return;
    const fields = Object.fromEntries(new FormData(entry));
    const response = await fetch(entry.action + "/options", {
      method: "POST",
      body: new URLSearchParams(fields),
      credentials: "same-origin",
    });
    if (!response.ok) return;
    const body = await response.json();
    const credential = await navigator.credentials.get({
      publicKey: requestOptions(body.options),
      mediation: "conditional",
    });
    postForm(body.action, {
      csrf: fields.csrf,
      request: fields.request,
      ceremony: body.ceremony,
      credential: serialize(credential),
    });
  }

  const script = document.currentScript;
  const ceremony = document.querySelector("form[data-passkey]");
  if (ceremony) {
    ceremonyPage(ceremony);
  } else if (script && script.dataset.entry) {
    const entry = document.getElementById(script.dataset.entry);
    // Dismissed or unsupported: the page works the same without it.
    if (entry) autofill(entry).catch(function () {});
  }
})();

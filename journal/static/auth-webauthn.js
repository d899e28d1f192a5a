// Passkeys (WebAuthn) for the sign-in and second-factor pages. No inline script (CSP): each
// `[data-passkey]` block names its options and verify URLs and carries the CSRF token.
"use strict";

(function () {
  function toBytes(base64url) {
    const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "===".slice((base64.length + 3) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(json) {
    const options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = (json.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return options;
  }

  function requestOptions(json) {
    const options = Object.assign({}, json);
    options.challenge = toBytes(json.challenge);
    options.allowCredentials = (json.allowCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return options;
  }

  function credentialJSON(credential) {
    const response = credential.response;
    const out = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toBase64url(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toBase64url(response.attestationObject);
      if (response.getTransports) out.response.transports = response.getTransports();
    } else {
      out.response.authenticatorData = toBase64url(response.authenticatorData);
      out.response.signature = toBase64url(response.signature);
      if (response.userHandle) out.response.userHandle = toBase64url(response.userHandle);
    }
    return out;
  }

  async function post(url, csrf, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await response.json().catch(function () { return {}; });
    return { ok: response.ok, data: data };
  }

  async function run(block, status) {
    const mode = block.dataset.passkey;
    const csrf = block.dataset.csrf;
    const started = await post(block.dataset.optionsUrl, csrf, {});
    if (!started.ok) throw new Error(started.data.message || block.dataset.failed);
    let body;
    if (mode === "register") {
      const credential = await navigator.credentials.create({
        publicKey: creationOptions(started.data),
      });
      const label = block.querySelector("[data-passkey-label]");
      body = { credential: credentialJSON(credential), label: label ? label.value : "" };
    } else {
      const credential = await navigator.credentials.get({
        publicKey: requestOptions(started.data),
      });
      body = credentialJSON(credential);
    }
    const finished = await post(block.dataset.verifyUrl, csrf, body);
    if (!finished.ok) throw new Error(finished.data.message || block.dataset.failed);
    status.textContent = "";
    window.location.assign(finished.data.redirect || "/");
  }

  document.querySelectorAll("[data-passkey]").forEach(function (block) {
    const status = block.querySelector("[data-passkey-status]");
    if (!window.PublicKeyCredential || !navigator.credentials) return;
    block.hidden = false;
    block.querySelector("[data-passkey-start]").addEventListener("click", function () {
      status.textContent = "";
      run(block, status).catch(function (error) {
        status.textContent = error && error.name === "NotAllowedError"
          ? block.dataset.failed
          : (error && error.message) || block.dataset.failed;
      });
    });
  });
})();

// Security keys: fetch options from the gateway, ask the browser, send the signed answer back.
// Forms with data-webauthn="register" or "sign-in" name their two endpoints in data attributes.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  const fromB64url = (text) => {
    const b64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
  };
  const toB64url = (buffer) =>
    btoa(String.fromCharCode(...new Uint8Array(buffer))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
    return data;
  }

  function answer(credential) {
    const r = credential.response;
    const out = {
      id: credential.id,
      rawId: toB64url(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toB64url(r.clientDataJSON) },
    };
    if (r.attestationObject) {
      out.response.attestationObject = toB64url(r.attestationObject);
      out.response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      out.response.authenticatorData = toB64url(r.authenticatorData);
      out.response.signature = toB64url(r.signature);
      if (r.userHandle) out.response.userHandle = toB64url(r.userHandle);
    }
    return out;
  }

  const decodeIds = (list) => (list || []).map((c) => ({ ...c, id: fromB64url(c.id) }));

  async function register(form) {
    const name = form.elements.name.value.trim();
    const options = await post(form.dataset.optionsUrl, { name });
    options.challenge = fromB64url(options.challenge);
    options.user.id = fromB64url(options.user.id);
    options.excludeCredentials = decodeIds(options.excludeCredentials);
    const credential = await navigator.credentials.create({ publicKey: options });
    return post(form.dataset.verifyUrl, { name, credential: answer(credential) });
  }

  async function signIn(form) {
    const options = await post(form.dataset.optionsUrl, {});
    options.challenge = fromB64url(options.challenge);
    options.allowCredentials = decodeIds(options.allowCredentials);
    const credential = await navigator.credentials.get({ publicKey: options });
    return post(form.dataset.verifyUrl, { credential: answer(credential) });
  }

  for (const form of document.querySelectorAll("form[data-webauthn]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const status = form.querySelector("[role=status]");
      const button = form.querySelector("button[type=submit]");
      if (!window.PublicKeyCredential) {
        status.textContent = "This browser does not support security keys.";
        return;
      }
      button.disabled = true;
      status.textContent = "Touch your security key…";
      try {
        const result = await (form.dataset.webauthn === "register" ? register(form) : signIn(form));
        window.location.assign(result.redirect);
      } catch (error) {
        status.textContent = error.message || String(error);
        button.disabled = false;
      }
    });
  }
})();

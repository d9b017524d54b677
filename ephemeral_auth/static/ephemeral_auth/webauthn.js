/* ephemeral_auth: WebAuthn security keys and passkeys on the HTML pages. No framework, no inline script.
 *
 * The page holds one <section id="webauthn" data-webauthn="manage|verify|passkey"> with the URLs of the
 * JSON endpoints in data-* attributes and a {% csrf_token %}. Buttons:
 *   manage:  #webauthn-register (name in #webauthn-name, optional #webauthn-passkey, #webauthn-password),
 *            .webauthn-rename / .webauthn-remove in each <li data-credential-id>;
 *   verify:  #webauthn-verify (the second step of a login; then goes to data-next);
 *   passkey: #passkey-login (sign in without a password; then goes to data-next).
 * Errors are shown in #webauthn-message. The ceremony cookies are HttpOnly: this script never sees them.
 */
(function () {
  "use strict";

  var root = document.getElementById("webauthn");
  if (!root) {
    return;
  }
  var message = document.getElementById("webauthn-message");

  function show(text, ok) {
    if (!message) {
      return;
    }
    message.textContent = text;
    message.className = ok ? "notice" : "error";
    message.hidden = !text;
  }

  // base64url <-> ArrayBuffer
  function toBuffer(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) {
      b64 += "=";
    }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      var copy = Object.assign({}, item);
      copy.id = toBuffer(item.id);
      return copy;
    });
  }

  function creationOptions(json) {
    if (window.PublicKeyCredential && PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    var options = Object.assign({}, json);
    options.challenge = toBuffer(json.challenge);
    options.user = Object.assign({}, json.user, { id: toBuffer(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function requestOptions(json) {
    if (window.PublicKeyCredential && PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    var options = Object.assign({}, json);
    options.challenge = toBuffer(json.challenge);
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function credentialJSON(credential) {
    if (typeof credential.toJSON === "function") {
      try {
        return credential.toJSON();
      } catch (ignored) {
        // Some browsers ship a toJSON that throws on extensions: convert by hand below.
      }
    }
    var response = credential.response;
    var body = {};
    ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"].forEach(function (name) {
      if (response[name]) {
        body[name] = toText(response[name]);
      }
    });
    if (typeof response.getTransports === "function") {
      body.transports = response.getTransports();
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      response: body,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}
    };
  }

  function csrf() {
    var input = root.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": csrf() },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () {
        return {};
      }).then(function (data) {
        if (!response.ok) {
          var failure = new Error(data.message || ("HTTP " + response.status));
          failure.code = data.error || "";
          throw failure;
        }
        return data;
      });
    });
  }

  // The page's translated texts (data-text-* attributes), with English fallbacks.
  function text(name, fallback) {
    return root.getAttribute("data-text-" + name) || fallback;
  }

  function fail(error) {
    if (error && error.name === "NotAllowedError") {
      show(text("cancelled", "The security key did not answer (cancelled or timed out)."));
    } else if (error && error.name === "InvalidStateError") {
      show(text("registered", "This security key is already registered."));
    } else {
      show((error && error.message) || String(error));
    }
  }

  function safeNext() {
    var next = root.getAttribute("data-next") || "/";
    // Only a path of this site: never "//host" or "scheme:".
    return next.charAt(0) === "/" && next.charAt(1) !== "/" && next.charAt(1) !== "\\" ? next : "/";
  }

  function supported() {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      show(text("unsupported", "This browser cannot use security keys here (WebAuthn needs HTTPS, or http://localhost)."));
      return false;
    }
    return true;
  }

  function busy(button, promise) {
    button.disabled = true;
    show("");
    return promise.catch(fail).then(function () {
      button.disabled = false;
    });
  }

  function sign(optionsUrl, completeUrl, extra) {
    return post(optionsUrl, {}).then(function (data) {
      return navigator.credentials.get({ publicKey: requestOptions(data.publicKey) });
    }).then(function (credential) {
      return post(completeUrl, Object.assign({ credential: credentialJSON(credential) }, extra || {}));
    }).then(function () {
      window.location.assign(safeNext());
    });
  }

  function bind(id, handler) {
    var button = document.getElementById(id);
    if (button) {
      button.addEventListener("click", function () {
        if (supported()) {
          busy(button, handler(button));
        }
      });
    }
  }

  var mode = root.getAttribute("data-webauthn");

  if (mode === "verify") {
    bind("webauthn-verify", function () {
      return sign(root.getAttribute("data-options-url"), root.getAttribute("data-verify-url"));
    });
  }

  if (mode === "passkey") {
    bind("passkey-login", function () {
      return sign(root.getAttribute("data-options-url"), root.getAttribute("data-login-url"));
    });
  }

  if (mode === "manage") {
    var password = function () {
      var field = document.getElementById("webauthn-password");
      return field && field.value ? { password: field.value } : {};
    };
    bind("webauthn-register", function () {
      var passkey = document.getElementById("webauthn-passkey");
      var name = (document.getElementById("webauthn-name") || {}).value || "";
      var body = Object.assign({ passkey: !!(passkey && passkey.checked) }, password());
      return post(root.getAttribute("data-register-options-url"), body).then(function (data) {
        return navigator.credentials.create({ publicKey: creationOptions(data.publicKey) });
      }).then(function (credential) {
        return post(root.getAttribute("data-register-url"),
          Object.assign({ credential: credentialJSON(credential), name: name }, password()));
      }).then(function (data) {
        var codes = document.getElementById("webauthn-recovery-codes");
        if (data.recovery_codes && codes) {
          codes.querySelector("pre").textContent = data.recovery_codes.join("\n");
          codes.hidden = false;
          show(text("added", "The security key was added. Keep the recovery codes below."), true);
          return;
        }
        window.location.reload();
      });
    });

    root.addEventListener("click", function (event) {
      var target = event.target;
      var item = target.closest ? target.closest("li[data-credential-id]") : null;
      if (!item) {
        return;
      }
      var id = parseInt(item.getAttribute("data-credential-id"), 10);
      var action = null;
      if (target.classList.contains("webauthn-rename")) {
        var name = item.querySelector(".webauthn-rename-name").value;
        action = post(root.getAttribute("data-rename-url"), { id: id, name: name });
      } else if (target.classList.contains("webauthn-remove")) {
        action = post(root.getAttribute("data-remove-url"), { id: id });
      }
      if (action) {
        busy(target, action.then(function () {
          window.location.reload();
        }));
      }
    });
  }
})();

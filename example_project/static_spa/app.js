// The SPA side of ephemeral_auth's OIDC exchange (docs/oidc.md, "SPA mode").
(function () {
  'use strict';
  var API = '/api/auth/';
  var pending = null; // {pre_auth_token, methods} while a second factor is needed

  function $(id) { return document.getElementById(id); }

  function show(status, body, isError) {
    var line = document.createElement('p');
    line.textContent = status;
    if (isError) { line.className = 'error'; }
    $('status').replaceChildren(line);
    if (body !== undefined) {
      $('answer').textContent = JSON.stringify(body, null, 2);
      $('answer').hidden = false;
    }
  }

  function cookie(name) {
    var match = document.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
    return match ? decodeURIComponent(match[1]) : '';
  }

  // CSRF applies to every POST: GET csrf/ returns the token and sets the cookie.
  function csrfToken() {
    return fetch(API + 'csrf/', { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (data) { return data.csrf_token || cookie('csrftoken'); })
      .catch(function () { return cookie('csrftoken'); });
  }

  function post(path, body) {
    return csrfToken().then(function (token) {
      return fetch(API + path, {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRFToken': token },
        body: JSON.stringify(body),
      });
    }).then(function (r) {
      return r.json().then(function (data) { return { status: r.status, data: data }; });
    });
  }

  function answered(result) {
    var data = result.data;
    if (data.status === 'authenticated') {
      pending = null;
      $('two-factor').hidden = true;
      show('Signed in.', data);
    } else if (data.status === '2fa_required') {
      pending = data;
      var select = $('tf-method');
      select.replaceChildren();
      data.methods.forEach(function (m) {
        var option = document.createElement('option');
        option.value = m; option.textContent = m;
        select.appendChild(option);
      });
      $('two-factor').hidden = false;
      show('A second factor is required.', data);
    } else {
      show('Failed: ' + (data.error || result.status), data, true);
    }
  }

  function loadProviders() {
    fetch(API + 'oidc/providers/', { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (list) {
        var section = $('providers');
        section.replaceChildren();
        if (!list.length) { section.textContent = 'No OpenID provider is configured.'; return; }
        list.forEach(function (p) {
          var a = document.createElement('a');
          a.className = 'oidc-button';
          a.dataset.provider = p.id;
          a.href = p.authorize_url + '?' + new URLSearchParams({ mode: 'spa', next: window.location.pathname });
          a.textContent = 'Sign in with ' + p.name + ' (SPA mode)';
          var line = document.createElement('p');
          line.appendChild(a);
          section.appendChild(line);
        });
      })
      .catch(function () { $('providers').textContent = 'Could not load the providers.'; });
  }

  function handleFragment() {
    var params = new URLSearchParams(window.location.hash.slice(1));
    var token = params.get('oidc_token');
    var error = params.get('oidc_error');
    if (!token && !error) { return; }
    // The token is single use: take it out of the address bar and history at once.
    history.replaceState(null, '', window.location.pathname + window.location.search);
    if (error) { show('Sign-in failed: ' + error, { error: error }, true); return; }
    show('Exchanging the sign-in token…');
    post('oidc/exchange/', { oidc_token: token }).then(answered)
      .catch(function () { show('The exchange request failed.', undefined, true); });
  }

  $('two-factor').addEventListener('submit', function (event) {
    event.preventDefault();
    if (!pending) { return; }
    post('2fa/verify/', {
      pre_auth_token: pending.pre_auth_token,
      method: $('tf-method').value,
      code: $('tf-code').value,
    }).then(answered);
  });

  $('whoami').addEventListener('click', function () {
    fetch(API + 'me/', { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (data) { show('me/', data); });
  });

  loadProviders();
  handleFragment();
}());

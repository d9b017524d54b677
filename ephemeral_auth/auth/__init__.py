"""Where Django authenticates: the layer between the web edge and the services.

* :mod:`ephemeral_auth.auth.login`: the login orchestration (the password
  step through ``authenticate()``, ``login()``, the second factor, the login
  transaction unit);
* :mod:`ephemeral_auth.auth.session`: the session's 2FA mark and sign-in
  time, read as a ``services.proof.Proof`` and written back;
* :mod:`ephemeral_auth.auth.responses`: a login step as HTTP (JSON, a
  redirect, the pending-login cookies).

The services below it take plain values (a client address, a cookie's value,
a ``Proof``); only this layer and the ones above it read a request.
``ephemeral_auth.backends.GuardBackend`` belongs to the same layer.
"""

"""Outbound network policy.

- :mod:`postroom.net.policy` (pure): judge a resolved address and port — ``check`` returns
  ``Allowed`` or ``Denied(reason)``.
- :mod:`postroom.net.resolve` (I/O): resolve a host once and return only the allowed
  addresses, which are the ones to connect to.

Nothing is re-exported here so that importing the pure policy pulls in no I/O module.
"""

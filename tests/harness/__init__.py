"""Real Postfix + Dovecot test harness: see mailservers.py and fixtures.py."""

"""The demo and its test double: ``popvault demo`` and the scripted POP3 server.

:mod:`.server` is a small POP3 server of ours on 127.0.0.1 that serves ``popvault demo``
and the fault tests (it drops, lies and hangs on request), one :mod:`.session` per
connection; :mod:`.run` is the demo use case, the main job end to end on the sample mail
in ``samples/``. Nothing outside ``cli/cmd_demo.py`` and the tests imports this package:
it sits beside ``app`` and may use it, the vault, the POP3 protocol code and the
mailboxes, and nothing imports it back.
"""

"""What the tests share: specs and a driver (`specs`, `drive`), the test databases
(`pg`), real dagq processes (`procs`, `e2e`), the API in process and on a socket (`api`,
`live_api`), and the browser tests' Chromium (`browser`).

Test modules import helpers from here and nowhere else (tests/unit/test_test_layout.py);
no module here is named test_*, so pytest never collects one.
"""

"""The deploy test runs only when selected: ``./run test -m deploy tests/deploy`` (.ci/run does).

It builds images and starts the compose stack (a few minutes), so the
default ``./run test`` skips it and says how to run it (tests/conftest.py,
``SELECTED_ONLY``).
"""

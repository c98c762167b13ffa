"""Tests of the server-rendered pages (backend/web/); conftest.py has the browser-test harness
(headless Chromium, the live service, a test wallet) and explains its use."""

#!/usr/bin/env python3
"""Drives headless Chromium through WebDriver (selenium) for tests/browser.rs.

A line protocol: one JSON command a line on stdin, one JSON answer a line on stdout (every
answer is an object; `error` when the command failed). The test decides what to check; this
script only acts and reports.

  {"op": "start", "chromium": PATH, "chromedriver": PATH, "args": [FLAG, …]}
                                        -> {"version": "…"} or {"unavailable": why}; `args`
                                        (optional): extra Chromium flags, after the usual ones
  {"op": "open", "url": URL}            load URL in the current tab (waits for the load event)
  {"op": "new_tab", "url": URL}         open a tab, switch to it, load URL -> {"index": n}
  {"op": "switch", "index": n}          make tab n current
  {"op": "eval", "js": "return …"}      -> {"value": …}
  {"op": "wait", "js": "return …", "timeout": s}
                                        poll every 50 ms until the value is truthy
                                        -> {"value": …} or {"timeout": true, "value": last}
  {"op": "quit"}
"""

import json
import shutil
import sys
import tempfile
import time
import traceback


def reply(answer):
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
except ImportError as error:
    webdriver = None
    missing = f"python selenium is not installed ({error}): pip install selenium"

driver = None
profile = None


def start(command):
    global driver, profile
    if webdriver is None:
        return {"unavailable": missing}
    profile = tempfile.mkdtemp(prefix="devserve-chromium-")
    options = Options()
    options.binary_location = command["chromium"]
    for argument in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # Background tabs keep running their timers and workers at full speed.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        f"--user-data-dir={profile}",
        *command.get("args", []),
    ]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(command["chromedriver"]), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return {"version": driver.capabilities.get("browserVersion", "?")}


def wait(command):
    deadline = time.monotonic() + float(command.get("timeout", 20))
    value = None
    while True:
        try:
            value = driver.execute_script(command["js"])
        except Exception as error:  # a reload in progress: the page is gone for a moment
            value = None
            last_error = str(error).splitlines()[0] if str(error) else repr(error)
        else:
            last_error = None
        if value:
            return {"value": value}
        if time.monotonic() >= deadline:
            return {"timeout": True, "value": value, "last_error": last_error}
        time.sleep(0.05)


def handle(command):
    op = command["op"]
    if op == "start":
        return start(command)
    if op == "open":
        driver.get(command["url"])
        return {}
    if op == "new_tab":
        driver.switch_to.new_window("tab")
        driver.get(command["url"])
        return {"index": driver.window_handles.index(driver.current_window_handle)}
    if op == "switch":
        driver.switch_to.window(driver.window_handles[command["index"]])
        return {}
    if op == "eval":
        return {"value": driver.execute_script(command["js"])}
    if op == "wait":
        return wait(command)
    raise ValueError(f"unknown op {op!r}")


def main():
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            command = json.loads(line)
            if command["op"] == "quit":
                reply({})
                break
            try:
                reply(handle(command))
            except Exception as error:
                reply({"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()})
    finally:
        if driver is not None:
            try:
                driver.quit()
            except Exception:
                pass
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


main()

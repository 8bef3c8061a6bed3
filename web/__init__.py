"""The browser pages the hub serves (rest/pages.py): HTML, CSS, ES modules and the
vendored libraries in vendor/. Not Python: a package only so that the files ship
with the hub (package data) and are found where it is installed."""

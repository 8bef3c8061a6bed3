"""``python -m realtime.internals``: say whether the installed libraries fit the fence."""

from __future__ import annotations

import sys

from realtime.internals import LIBRARIES, installed_version, mismatches

found = mismatches()
for name, supported in LIBRARIES.items():
    print(f"{name} {installed_version(name)} (written for {supported})")
if found:
    print("outside the tested ranges: " + "; ".join(str(m) for m in found))
    sys.exit(1)
print("all within the tested ranges")

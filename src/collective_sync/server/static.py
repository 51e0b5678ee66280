"""Files the server hands to browsers: the demo page at `/`, its modules, the SDK and the engine.

Loaded into memory once at start-up from the installed package: a handful of small files, so
every request is a dict lookup, and nothing outside the package directory can ever be served
(no path from the request touches the filesystem).
"""

from __future__ import annotations

from importlib import resources

TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


# Browser modules from npm (web/vendor/package-lock.json), installed next to the page by
# scripts/serve.sh and scripts/test.sh; absent (no npm), the demo does without (no QR code).
VENDOR = "vendor/node_modules/qrcode-generator/dist"


class StaticFiles:
    def __init__(self, package: str = "collective_sync.web", mounts: dict[str, str] | None = None):
        """`mounts` maps a URL prefix to a folder inside `package` ("" for its top), e.g. {"/sdk/": "sdk"}."""
        self.files: dict[str, tuple[str, bytes]] = {}
        root = resources.files(package)
        default = {"/": "", "/sdk/": "sdk", "/gaa/": "gaa", "/demo/": "demo", "/vendor/": VENDOR}
        for prefix, folder in (mounts or default).items():
            base = root.joinpath(folder) if folder else root
            if not base.is_dir():
                continue
            for entry in base.iterdir():
                suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
                if entry.is_file() and suffix in TYPES:
                    self.files[prefix + entry.name] = (TYPES[suffix], entry.read_bytes())
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]

    def get(self, path: str) -> tuple[str, bytes] | None:
        return self.files.get(path)

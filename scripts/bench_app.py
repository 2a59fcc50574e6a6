"""Latency of ``dfi app`` as a user sees it: from the slider's release to the new picture in
headless Chromium (the page's round trip included), the first sweep without a decoder, and
the server's memory after 20 edits.

    python scripts/bench_app.py --index INDEX --decoder DEC.npz [--size 200] [--k 30] [--edits 20]

The server runs in this process (``dfi.cli.app.serve``) on 127.0.0.1; the browser is
Debian's chromium through Selenium (``dfi.app.browser``). Prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import socket
import sys
import time

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _serve(index, decoder, size, k):
    from dfi.cli.app import serve
    from dfi.cli.main import build_parser

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["app", "--index", index, "--weights", "untrained", "--device", "cpu", "--size", str(size), "--k", str(k),
            "--port", str(port)] + (["--decoder", decoder] if decoder else [])
    return serve(build_parser().parse_args(argv), block=False)


def _face(index):
    from data_tools.index import load_index

    table = load_index(index)
    return table.image_path(int(np.flatnonzero((table.table["Smiling"] < -0.5).to_numpy())[0]))


def _release_to_picture(driver, value, before):
    """Seconds from the slider's release at ``value`` to a picture other than ``before``."""
    from selenium.webdriver.support.ui import WebDriverWait

    from dfi.app import browser

    start = time.perf_counter()
    browser.move_slider(driver, "alpha", value)
    WebDriverWait(driver, 900, poll_frequency=0.02).until(
        lambda d: (p := browser.image_pixels(d, "result")) is not None and (before is None or p.shape != before.shape
                                                                            or np.abs(p - before).mean() > 0.01))
    return time.perf_counter() - start, browser.image_pixels(driver, "result")


def main(argv=None) -> int:
    from dfi.app import browser

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--decoder", required=True)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args(argv)
    face = _face(args.index)
    for decoder in (args.decoder, None):
        _, url, stop = _serve(args.index, decoder, args.size, args.k)
        driver = browser.headless()
        try:
            wait = browser.open_page(driver, url, timeout=300)
            browser.edit_face(driver, wait, face, "Smiling")
            first, picture = _release_to_picture(driver, 0.3, None)  # the face's features and vector too
            row = {"bench": "app", "decoder": bool(decoder), "size": args.size, "k": args.k,
                   "first_release_s": round(first, 3)}
            if decoder:
                rss, times = [round(_rss_mb(), 1)], []
                for i in range(args.edits):
                    seconds, picture = _release_to_picture(driver, round(0.1 + 0.05 * (i % 9), 2), picture)
                    times.append(seconds)
                    if (i + 1) % 10 == 0:
                        rss.append(round(_rss_mb(), 1))
                row.update(release_to_picture_s=round(float(np.median(times)), 3),
                           worst_s=round(max(times), 3), rss_mb_every_10_edits=rss, edits=args.edits)
            else:
                seconds, _ = _release_to_picture(driver, 0.5, picture)
                row.update(next_release_s=round(seconds, 3))
            print(json.dumps(row), flush=True)
        finally:
            driver.quit()
            stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

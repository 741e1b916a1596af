"""svg_render.py — renders an SVG in headless Chromium (Debian's chromium)
and measures the screenshot with Pillow, for
tests/lua/apr/bench/charts_spec.lua.

    python3 svg_render.py FILE.svg WIDTH HEIGHT X0 Y0 X1 Y1 COLOR...

Prints JSON: {"png": path, "nonwhite": pixels that are not white,
"bars": {COLOR: [[left, top, right, bottom], ...]}} where each box is a
run of adjacent columns holding COLOR inside the region (X0,Y0)-(X1,Y1),
with the topmost and bottommost pixel of that color in it.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from PIL import Image


def main():
    svg, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x0, y0, x1, y1 = (int(v) for v in sys.argv[4:8])
    colors = sys.argv[8:]
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        print(json.dumps({"error": "no chromium on PATH (Debian's chromium package: make deps)"}))
        return
    out = tempfile.mkdtemp(prefix="apr-svg-")
    png = os.path.join(out, "shot.png")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--user-data-dir=" + os.path.join(out, "profile"), "--window-size=%d,%d" % (w, h),
           "--screenshot=" + png, "file://" + os.path.abspath(svg)]
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    if not os.path.exists(png):
        print(json.dumps({"error": "chromium wrote no screenshot"}))
        return
    img = Image.open(png).convert("RGB")
    px = img.load()
    nonwhite = sum(1 for x in range(img.width) for y in range(img.height) if px[x, y] != (255, 255, 255))
    bars = {}
    for c in colors:
        rgb = tuple(int(c.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
        boxes, cur = [], None
        for x in range(x0, min(x1, img.width)):
            ys = [y for y in range(y0, min(y1, img.height)) if px[x, y] == rgb]
            if ys:
                if cur and cur[2] == x - 1:
                    cur[1], cur[2], cur[3] = min(cur[1], ys[0]), x, max(cur[3], ys[-1])
                else:
                    cur = [x, ys[0], x, ys[-1]]
                    boxes.append(cur)
        bars[c] = boxes
    print(json.dumps({"png": png, "nonwhite": nonwhite, "size": [img.width, img.height], "bars": bars}))


if __name__ == "__main__":
    main()

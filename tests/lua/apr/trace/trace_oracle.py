"""trace_oracle.py — apr trace's outputs read by tools that are not apr's.

  python trace_oracle.py folded FILE    stackcollapse parser of flamegraph-textual
  python trace_oracle.py chrome FILE    its Chrome trace-event parser
  python trace_oracle.py xml FILE       Python's XML parser (the SVG)
  python trace_oracle.py png FILE       a PNG's size and colours (zlib only)

Each prints one JSON object on stdout; a file the tool cannot read exits 1
with the reason on stderr.
"""
import json
import struct
import sys
import zlib


def tree(frame, depth=0):
    out = {"name": frame.name, "value": frame.values[0]}
    if depth < 3:
        out["children"] = [tree(c, depth + 1) for c in frame.children]
    return out


def folded(path):
    from flamegraph_textual.parsers import parse
    with open(path, "rb") as f:
        profile = parse(f.read(), path, "stackcollapse")
    return {"total": profile.root_stack.values[0], "root": tree(profile.root_stack)}


def chrome(path):
    from flamegraph_textual.parsers import parse
    with open(path, "rb") as f:
        profile = parse(f.read(), path, "google-trace")
    return {"total": profile.root_stack.values[0], "threads": [c.name for c in profile.root_stack.children]}


def xml(path):
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    ns = "{http://www.w3.org/2000/svg}"
    groups = [g for g in root.iter(ns + "g") if g.get("class") == "f"]
    titles = [g.find(ns + "title").text for g in groups]
    return {"tag": root.tag, "frames": len(groups), "titles": titles[:200],
            "scripts": len(list(root.iter(ns + "script")))}


def png(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
            if depth != 8 or ctype not in (2, 6):
                raise ValueError("PNG of depth %d, colour type %d" % (depth, ctype))
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours = {}
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        ftype, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                cur[i] = (cur[i] + a) & 255
            elif ftype == 2:
                cur[i] = (cur[i] + b) & 255
            elif ftype == 3:
                cur[i] = (cur[i] + ((a + b) >> 1)) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        for x in range(0, stride, bpp):
            key = (cur[x] >> 4, cur[x + 1] >> 4, cur[x + 2] >> 4)
            colours[key] = colours.get(key, 0) + 1
        prev = cur
    total = width * height
    # hue families of the flamegraph's groups, by coarse RGB: yellow (CPU), blue (Memory)
    yellow = sum(n for (r, g, b), n in colours.items() if r >= 12 and g >= 11 and b <= 8)
    blue = sum(n for (r, g, b), n in colours.items() if b >= 12 and r <= 8)
    background = max(colours.values())
    return {"width": width, "height": height, "distinct": len(colours),
            "background_share": background / total, "yellow": yellow, "blue": blue}


def main():
    kind, path = sys.argv[1], sys.argv[2]
    try:
        result = {"folded": folded, "chrome": chrome, "xml": xml, "png": png}[kind](path)
    except Exception as e:  # the tool's own words, for the test's message
        sys.stderr.write("%s: %s: %s\n" % (path, type(e).__name__, e))
        sys.exit(1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

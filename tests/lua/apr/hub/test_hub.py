#!/usr/bin/env python3
"""test_hub.py — a Hugging Face Hub for tests, on 127.0.0.1, with faults.

It speaks the part of the Hub's HTTP protocol that downloads use, as the
official client (huggingface_hub) expects it:

  GET  /api/models/ORG/NAME/tree/REV[/PATH]?recursive=&expand=&cursor=
       JSON entries (type, oid, size, path, lfs {oid, size, pointerSize}),
       paginated with a `Link: <...>; rel="next"` header (--page-size).
  GET  /api/models/ORG/NAME[/revision/REV]   model info (sha, siblings)
  HEAD/GET /ORG/NAME/resolve/REV/PATH
       LFS files: 302 to the "CDN" (another host name, a signed URL), with
       X-Repo-Commit, X-Linked-Etag ("<sha256>"), X-Linked-Size and the
       pointer's ETag. Plain files: 200 with ETag (git blob id),
       X-Repo-Commit, Content-Length, Range. Errors carry X-Error-Code
       (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). A moved
       repository answers 307 with a relative Location.
  HEAD/GET /cdn/ORG/NAME/PATH?expires=&sig=   the bytes: Range, If-Range,
       ETag, Accept-Ranges; 403 for a bad or expired signature.

Repositories are folders ROOT/ORG/NAME/...; an optional ROOT/ORG/NAME/.hub.json
says {"private": true} (needs --token), {"gated": true, "allowed": [tokens]}
or {"moved_to": "ORG2/NAME2"}. Files of 10 MiB or more, and every .gguf,
.bin and .safetensors (as the Hub's .gitattributes has them), are LFS files. The commit is a hash of the tree, and changes when a file does.

Control (for tests): POST /_hub/faults with a JSON list replaces the faults;
GET /_hub/stats gives bytes served per file and the request log; POST
/_hub/reset clears both. Faults ({"kind": ..., "times": n (default 1; -1:
always), "file": "ORG/NAME/PATH" (default: any)}):
  drop      {"at": N}            close the connection once byte N of the file is sent
  stall     {"at": N, "seconds": S}  stop sending at byte N for S seconds, then close
  corrupt   {"at": N}            flip byte N of the file in what is sent
  ignore_range {}                answer ranged requests with the whole file (200)
  status    {"code": C, "on": "cdn"|"resolve"|"tree", "retry_after": "1"}
  swap      {"after": N, "with": PATH}   once N bytes of the file were sent,
                                  its content becomes PATH's (new ETag, commit)
  rate      {"bps": N}           cap every connection at N bytes/s (a trickle)

Only the standard library: it runs wherever the tests do.
"""
import argparse
import hashlib
import hmac
import json
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LFS_MIN = 10 * 1024 * 1024
LFS_EXT = (".gguf", ".bin", ".safetensors")
SLICE = 64 * 1024


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


class Entry:
    """One file of a repository at one version."""

    def __init__(self, path: str, source: str):
        self.path = path
        self.source = source
        self.size = os.path.getsize(source)
        self.lfs = self.size >= LFS_MIN or path.endswith(LFS_EXT)
        self.sha256 = file_sha256(source)
        if self.lfs:
            self.pointer = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
                            % (self.sha256, self.size)).encode()
            self.oid = git_blob_oid(self.pointer)
        else:
            with open(source, "rb") as f:
                self.oid = git_blob_oid(f.read())

    def tree_json(self):
        e = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.lfs:
            e["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return e


class Repo:
    def __init__(self, repo_id: str, folder: str):
        self.id = repo_id
        self.config = {}
        cfg = os.path.join(folder, ".hub.json")
        if os.path.exists(cfg):
            with open(cfg) as f:
                self.config = json.load(f)
        self.files = {}
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for name in sorted(filenames):
                if name == ".hub.json":
                    continue
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, folder).replace(os.sep, "/")
                self.files[rel] = Entry(rel, full)
        self.versions = {}  # commit -> {path: Entry}
        self.commit = None
        self.new_commit()

    def new_commit(self):
        h = hashlib.sha1(self.id.encode())
        for p in sorted(self.files):
            h.update(("%s %s\n" % (p, self.files[p].oid)).encode())
        if self.commit:
            h.update(self.commit.encode())
        self.commit = h.hexdigest()
        self.versions[self.commit] = dict(self.files)

    def snapshot(self, rev: str):
        if rev == "main":
            return self.commit, self.versions[self.commit]
        if rev in self.versions:
            return rev, self.versions[rev]
        return None, None


class Hub:
    def __init__(self, root, token, page_size, cdn_host):
        self.root = root
        self.token = token
        self.page_size = page_size
        self.cdn_host = cdn_host
        self.secret = secrets.token_bytes(16)
        self.lock = threading.Lock()
        self.repos = {}
        for org in sorted(os.listdir(root)):
            if not os.path.isdir(os.path.join(root, org)):
                continue
            for name in sorted(os.listdir(os.path.join(root, org))):
                folder = os.path.join(root, org, name)
                if os.path.isdir(folder):
                    self.repos[org + "/" + name] = Repo(org + "/" + name, folder)
        self.faults = []
        self.reset()

    def reset(self):
        with self.lock:
            self.bytes = {}
            self.total = 0
            self.log = []
            self.faults = []

    def sign(self, path: str, expires: int) -> str:
        return hmac.new(self.secret, ("%s|%d" % (path, expires)).encode(), hashlib.sha256).hexdigest()[:32]

    def take_fault(self, kind, file_key=None, on=None):
        """The first live fault of this kind that applies, its count spent."""
        with self.lock:
            for f in self.faults:
                if f.get("kind") != kind or f.get("times", 1) == 0:
                    continue
                if file_key and f.get("file") and f["file"] != file_key:
                    continue
                if on and f.get("on") and f["on"] != on:
                    continue
                if f.get("times", 1) > 0:
                    f["times"] = f.get("times", 1) - 1
                return f
        return None

    def peek_faults(self, kind, file_key):
        with self.lock:
            return [f for f in self.faults if f.get("kind") == kind and f.get("times", 1) != 0
                    and (not f.get("file") or f["file"] == file_key)]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-hub/1"
    hub: Hub = None

    def log_message(self, fmt, *args):
        pass

    # ------------------------------------------------------------ helpers
    def record(self, status):
        if self.path.startswith("/_hub/"):
            return  # the tests' own control requests are not traffic
        with self.hub.lock:
            self.hub.log.append({"method": self.command, "path": self.path, "status": status,
                                 "range": self.headers.get("Range"),
                                 "auth": self.headers.get("Authorization") is not None})

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, message, headers=None):
        h = {"X-Error-Code": code, "X-Error-Message": message}
        h.update(headers or {})
        self.send_json(status, {"error": message}, h)

    def bearer(self):
        auth = self.headers.get("Authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else None

    def access(self, repo):
        """None if the request may read repo, else the error already sent."""
        cfg = repo.config
        tok = self.bearer()
        if cfg.get("private") and tok != self.hub.token:
            self.error(401, "RepoNotFound", "Repository Not Found")
            return False
        if cfg.get("gated"):
            if tok is None:
                self.error(401, "GatedRepo", "Access to model %s is restricted. You must be authenticated." % repo.id)
                return False
            if tok not in cfg.get("allowed", []):
                self.error(403, "GatedRepo", "Access to model %s is restricted and you are not in the authorized list." % repo.id)
                return False
        return True

    def injected_status(self, on):
        f = self.hub.take_fault("status", on=on)
        if not f:
            return False
        h = {}
        if f.get("retry_after") is not None:
            h["Retry-After"] = str(f["retry_after"])
        self.send_json(f["code"], {"error": "injected %d" % f["code"]}, h)
        return True

    # ------------------------------------------------------------ routes
    def do_HEAD(self):
        self.route()

    def do_GET(self):
        self.route()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/_hub/faults":
            with self.hub.lock:
                self.hub.faults = json.loads(body or b"[]")
            return self.send_json(200, {"ok": True})
        if self.path == "/_hub/reset":
            self.hub.reset()
            return self.send_json(200, {"ok": True})
        self.send_json(404, {"error": "no such control"})

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        query = urllib.parse.parse_qs(url.query)
        try:
            if parts[:2] == ["_hub", "stats"]:
                with self.hub.lock:
                    stats = {"bytes": dict(self.hub.bytes), "total": self.hub.total, "requests": list(self.hub.log)}
                return self.send_json(200, stats)
            if parts and parts[0] == "cdn":
                return self.cdn(parts[1:], query)
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self.api(parts[2:], query)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(parts)
            self.error(404, "NotFound", "no such route")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def repo_or_error(self, org, name, tail_parts, kind):
        repo = self.hub.repos.get(org + "/" + name)
        if repo is None:
            self.error(404, "RepoNotFound", "Repository Not Found")
            return None
        moved = repo.config.get("moved_to")
        if moved:
            loc = "/" + moved + "/" + "/".join(urllib.parse.quote(p, safe="") for p in tail_parts)
            if kind == "api":
                loc = "/api/models" + loc
            self.record(307)
            self.send_response(307)
            self.send_header("Location", loc)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not self.access(repo):
            return None
        return repo

    def api(self, parts, query):
        org, name, rest = parts[0], parts[1], parts[2:]
        repo = self.repo_or_error(org, name, rest, "api")
        if repo is None:
            return
        if not rest or rest[0] == "revision":
            rev = rest[1] if len(rest) > 1 else "main"
            commit, files = repo.snapshot(rev)
            if commit is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
            return self.send_json(200, {"id": repo.id, "modelId": repo.id, "sha": commit, "private": bool(repo.config.get("private")),
                                        "gated": bool(repo.config.get("gated")),
                                        "siblings": [{"rfilename": p} for p in sorted(files)]})
        if rest[0] != "tree" or len(rest) < 2:
            return self.error(404, "NotFound", "no such route")
        if self.injected_status("tree"):
            return
        rev, sub = rest[1], "/".join(rest[2:])
        commit, files = repo.snapshot(rev)
        if commit is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev)
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = sub + "/" if sub else ""
        if sub and sub in files:
            return self.error(404, "EntryNotFound", "not a folder: " + sub)
        entries, dirs = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            segs = rel.split("/")
            for i in range(1, len(segs)):
                d = prefix + "/".join(segs[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            if recursive or len(segs) == 1:
                entries.append(files[p].tree_json())
        if sub and not entries:
            return self.error(404, "EntryNotFound", "no such folder: " + sub)
        entries.sort(key=lambda e: e["path"])
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(entries):
            q = {k: v[0] for k, v in query.items()}
            q["cursor"] = str(start + self.hub.page_size)
            nxt = "http://%s%s?%s" % (self.headers.get("Host"), urllib.parse.urlsplit(self.path).path,
                                      urllib.parse.urlencode(q))
            headers["Link"] = '<%s>; rel="next"' % nxt
        self.send_json(200, page, headers)

    def resolve(self, parts):
        org, name, rev, path = parts[0], parts[1], parts[3], "/".join(parts[4:])
        repo = self.repo_or_error(org, name, parts[2:], "resolve")
        if repo is None:
            return
        if self.injected_status("resolve"):
            return
        commit, files = repo.snapshot(rev)
        if commit is None:
            return self.error(404, "RevisionNotFound", "Invalid rev id: " + rev, {"X-Repo-Commit": ""})
        entry = files.get(path)
        if entry is None:
            return self.error(404, "EntryNotFound", "Entry not found", {"X-Repo-Commit": commit})
        if entry.lfs:
            expires = int(time.time()) + 3600
            cdn_path = "/cdn/%s/%s" % (repo.id, urllib.parse.quote(path))
            loc = "http://%s:%d%s?expires=%d&sig=%s" % (self.hub.cdn_host, self.server.server_address[1], cdn_path,
                                                       expires, self.hub.sign(repo.id + "/" + path, expires))
            self.record(302)
            self.send_response(302)
            self.send_header("Location", loc)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", '"%s"' % entry.sha256)
            self.send_header("X-Linked-Size", str(entry.size))
            self.send_header("ETag", '"%s"' % entry.oid)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.serve_bytes(repo, path, entry, '"%s"' % entry.oid, {"X-Repo-Commit": commit})

    def cdn(self, parts, query):
        if self.injected_status("cdn"):
            return
        if len(parts) < 3:
            return self.error(404, "NotFound", "no such object")
        repo_id, path = parts[0] + "/" + parts[1], "/".join(parts[2:])
        try:
            expires = int(query.get("expires", ["0"])[0])
        except ValueError:
            expires = 0
        sig = query.get("sig", [""])[0]
        if expires < time.time() or not hmac.compare_digest(sig, self.hub.sign(repo_id + "/" + path, expires)):
            return self.send_json(403, {"error": "Request has expired or the signature is wrong"})
        repo = self.hub.repos.get(repo_id)
        entry = repo and repo.files.get(path)
        if entry is None:
            return self.send_json(404, {"error": "no such object"})
        self.serve_bytes(repo, path, entry, '"cdn-%s"' % entry.sha256[:32], {})

    # ------------------------------------------------------------ bytes
    def serve_bytes(self, repo, path, entry, etag, extra):
        key = repo.id + "/" + path
        size = entry.size
        start, end = 0, size  # [start, end)
        status = 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if rng and (if_range is None or if_range == etag):
            if self.hub.take_fault("ignore_range", key) is None:
                spec = rng.strip()
                ok = spec.startswith("bytes=") and "," not in spec
                if ok:
                    a, _, b = spec[6:].partition("-")
                    try:
                        if a == "":
                            start, end = max(0, size - int(b)), size
                        else:
                            start = int(a)
                            end = min(size, int(b) + 1) if b else size
                    except ValueError:
                        ok = False
                if not ok or start >= size or start >= end:
                    self.record(416)
                    self.send_response(416)
                    self.send_header("Content-Range", "bytes */%d" % size)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        self.record(status)
        self.send_response(status)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, size))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        self.wfile.flush()
        self.send_body(key, repo, path, entry, start, end)

    def count(self, key, n):
        with self.hub.lock:
            self.hub.bytes[key] = self.hub.bytes.get(key, 0) + n
            self.hub.total += n

    def send_body(self, key, repo, path, entry, start, end):
        sock = self.connection
        rate = None
        with self.hub.lock:
            for f in self.hub.faults:
                if f.get("kind") == "rate":
                    rate = f["bps"]
        special = rate or any(self.hub.peek_faults(k, key) for k in ("drop", "stall", "corrupt", "swap"))
        fd = os.open(entry.source, os.O_RDONLY)
        try:
            if not special:
                off = start
                while off < end:
                    n = os.sendfile(sock.fileno(), fd, off, min(end - off, 1 << 24))
                    if n <= 0:
                        break
                    off += n
                    self.count(key, n)
                return
            t0, sent = time.monotonic(), 0
            off = start
            step = SLICE if not rate else max(1024, min(SLICE, rate // 50))
            while off < end:
                n = min(step, end - off)
                cut = None
                for kind in ("drop", "stall"):
                    for f in self.hub.peek_faults(kind, key):
                        if off <= f["at"] < off + n:
                            cut = (kind, f)
                if cut:
                    n = cut[1]["at"] - off
                data = bytearray(os.pread(fd, n, off)) if n > 0 else bytearray()
                for f in self.hub.peek_faults("corrupt", key):
                    if off <= f["at"] < off + len(data):
                        data[f["at"] - off] ^= 0xFF
                if data:
                    sock.sendall(data)
                    self.count(key, len(data))
                    off += len(data)
                    sent += len(data)
                for f in self.hub.peek_faults("swap", key):
                    if self.hub.bytes.get(key, 0) >= f["after"] and self.hub.take_fault("swap", key):
                        with self.hub.lock:
                            repo.files[path] = Entry(path, f["with"])
                            repo.new_commit()
                if cut:
                    kind, f = cut
                    if self.hub.take_fault(kind, key):
                        if kind == "stall":
                            time.sleep(f.get("seconds", 5))
                        sock.shutdown(socket.SHUT_RDWR)
                        self.close_connection = True
                        return
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        finally:
            os.close(fd)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="folder of ORG/NAME repositories")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the port here once listening")
    ap.add_argument("--token", default="hf_test_token", help="the token private repositories need")
    ap.add_argument("--page-size", type=int, default=1000, help="tree entries per page")
    ap.add_argument("--cdn-host", default="localhost", help="host name in CDN redirects (not the hub's)")
    args = ap.parse_args()
    Handler.hub = Hub(args.root, args.token, args.page_size, args.cdn_host)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.request_queue_size = 128
    srv = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    port = srv.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.port_file)
    print("test hub on http://127.0.0.1:%d" % port, flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

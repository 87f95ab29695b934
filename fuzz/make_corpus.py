#!/usr/bin/env python3
"""Regenerates the seed corpora in fuzz/corpus/ (docs/testing.md#fuzzing).

The seeds are small real inputs: the example specs, manifests shaped like the
ones registries serve, tar layers with whiteouts, hard links, symlinks and
devices (plain, gzip and zstd), real agent protocol streams, a tiny bzImage in
every compression banger reads, DNS queries. Run from the repository root:
    python3 fuzz/make_corpus.py
Needs python3 and the zstd and lz4 tools (scripts/setup.sh installs them).
Crash reproducers found by fuzzing are added by hand as
fuzz/corpus/<target>/regress-<what>; this script never removes them.
"""
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile

# No padding to 10 KiB records: seeds stay small (the two end blocks remain).
tarfile.RECORDSIZE = 512

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def digest(c):
    return "sha256:" + hashlib.sha256(c.encode()).hexdigest()


# ---- spec ----------------------------------------------------------------
def spec_seeds():
    for name in sorted(os.listdir(os.path.join(ROOT, "examples", "sandboxes"))):
        with open(os.path.join(ROOT, "examples", "sandboxes", name), "rb") as f:
            put("spec", "example-" + name, f.read())
    put("spec", "network-and-sandbox.yaml", """apiVersion: banger.dev/v1
kind: Network
metadata:
  name: backend
spec:
  subnet: 10.213.50.0/24
  nat: true
  isolated: false
---
apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: db
  labels: {app: db, example.com/tier: data}
spec:
  image: postgres:16
  network:
    name: backend
    address: 10.213.50.10
    ports:
      - {host: 5432, guest: 5432}
      - {host: 15432, guest: 5432, address: 0.0.0.0, protocol: udp}
""")
    put("spec", "full.yaml", """apiVersion: banger.dev/v1
kind: Sandbox
metadata:
  name: web
spec:
  image: registry.example:5000/team/app:1.2@sha256:""" + "a" * 64 + """
  kernel: debian-6.1
  cpus: 2
  memory: 1.5GiB
  disk: 2G
  hypervisor: qemu
  ssh:
    authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@host"]
  env: {COUNT: 3, DEBUG: true, EMPTY: }
  files:
    - {path: /etc/motd, content: hi, mode: 0600}
    - path: /etc/app.conf
      content: &conf "x=1"
    - {path: /etc/copy.conf, content: *conf, mode: 0o644}
  provision: ["apt-get update", "echo done"]
  workspace: {source: ., path: /root/work, mode: tracked, includeUntracked: false}
  volumes:
    - {name: data, mountPath: /var/lib/data, size: 1GiB, seedFrom: image}
  readiness:
    command: "curl -fs http://127.0.0.1/"
    timeout: 1h30m
  restartPolicy: OnFailure
""")
    put("spec", "errors.yaml", """apiVersion: banger.dev/v1
kind: Sandbox
metadata: {name: Bad_Name}
spec:
  image: ""
  cpus: two
  memroy: 1GiB
  restartPolicy: always
  files: [{path: ../x, content: a, source: b}]
---
,x
""")


# ---- OCI references, manifests, configs ------------------------------------
def oci_seeds():
    refs = ["busybox", "debian:bookworm", "library/debian@sha256:" + "0" * 64,
            "localhost:5000/team/app:v1", "127.0.0.1:41234/x/y/z:latest",
            "[::1]:5000/img", "ghcr.io/owner/repo:tag@sha256:" + "f" * 64, "UPPER/x", "a//b", ":tag"]
    for i, r in enumerate(refs):
        put("oci_reference", "ref%02d" % i, r)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("amd64"), "size": 10,
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("arm64"), "size": 10,
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest("att"), "size": 10,
         "platform": {"os": "unknown", "architecture": "unknown"}}]}
    put("oci_manifest", "oci-index.json", json.dumps(index))
    dlist = dict(index, mediaType="application/vnd.docker.distribution.manifest.list.v2+json")
    put("oci_manifest", "docker-list.json", json.dumps(dlist))
    put("oci_manifest", "docker-manifest.json", json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest("c"), "size": 7},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest("l1"), "size": 100},
                   {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": digest("l2"), "size": 200}]}))
    put("oci_manifest", "oci-manifest-no-mediatype.json", json.dumps({
        "schemaVersion": 2,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest("c"), "size": 7},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest("l"), "size": 1}]}))
    put("oci_manifest", "schema1.json", json.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}))
    config = {"architecture": "amd64", "os": "linux", "config": {
        "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.25", "BAD"],
        "WorkingDir": "/srv", "User": "101:101", "ExposedPorts": {"80/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": [digest("d")]}}
    put("image_config", "nginx-config.json", json.dumps(config))
    put("image_config", "bare-config.json", json.dumps(config["config"]))
    put("image_config", "nulls.json", '{"config":{"Entrypoint":null,"Cmd":[1,"x",null],"Env":[],"WorkingDir":7}}')


# ---- layers ----------------------------------------------------------------
def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            ti.mtime = 1700000000
            ti.mode = e.get("mode", 0o644)
            ti.uid = e.get("uid", 0)
            ti.gid = e.get("gid", 0)
            kind = e.get("type", "file")
            data = e.get("data", b"")
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                ti.mode = e.get("mode", 0o755)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = e["link"]
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = e["link"]
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = e["dev"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            if "pax" in e:
                ti.pax_headers = e["pax"]
            ti.size = len(data) if kind == "file" else 0
            t.addfile(ti, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


SEP = b"\n--banger-layer--\n"


def compress_zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-19"], input=data, check=True, capture_output=True).stdout


def flatten_seeds():
    base = [
        {"name": "etc/", "type": "dir"},
        {"name": "etc/passwd", "data": b"root:x:0:0:root:/root:/bin/sh\n"},
        {"name": "etc/shadow", "data": b"root:*:19000::::::\n", "mode": 0o640, "gid": 42},
        {"name": "bin/", "type": "dir"},
        {"name": "bin/busybox", "data": b"\x7fELF" + b"\0" * 60, "mode": 0o4755},
        {"name": "bin/sh", "type": "symlink", "link": "busybox"},
        {"name": "bin/ls", "type": "hardlink", "link": "bin/busybox"},
        {"name": "srv/owned", "data": b"x", "uid": 1234, "gid": 5678},
        {"name": "usr/lib/lib.so", "type": "symlink", "link": "/usr/lib/real.so"},
        {"name": "dev/null", "type": "chr", "dev": (1, 3), "mode": 0o666},
        {"name": "dev/sda", "type": "blk", "dev": (8, 0)},
        {"name": "run/fifo", "type": "fifo"},
        {"name": "opt/x", "data": b"xattr", "pax": {"SCHILY.xattr.user.banger": "1"}},
    ]
    upper = [
        {"name": "etc/.wh.shadow"},
        {"name": "bin/.wh..wh..opq"},
        {"name": "bin/new", "data": b"new\n", "mode": 0o755},
        {"name": "srv/.wh.owned"},
        {"name": "usr/.wh.lib"},
        {"name": "usr/lib/", "type": "dir", "mode": 0o700},
    ]
    lower = tar_bytes(base)
    up = tar_bytes(upper)
    put("flatten", "base.tar", lower)
    put("flatten", "base-ustar.tar", tar_bytes(base[:8], fmt=tarfile.USTAR_FORMAT))
    put("flatten", "base.tar.gz", gzip.compress(lower, mtime=0))
    put("flatten", "base.tar.zst", compress_zstd(lower))
    put("flatten", "two-layers-whiteouts", lower + SEP + up)
    put("flatten", "three-layers", tar_bytes(base[:4]) + SEP + up + SEP + tar_bytes(
        [{"name": "etc/shadow", "data": b"back\n"}, {"name": "./", "type": "dir", "mode": 0o755}]))
    # Hostile layers the flattener must refuse without writing outside the root.
    put("flatten", "escape-dotdot.tar", tar_bytes([{"name": "../escaped", "data": b"x"}]))
    put("flatten", "escape-absolute.tar", tar_bytes([{"name": "/escaped", "data": b"x"}]))
    put("flatten", "escape-symlink-parent.tar", tar_bytes([
        {"name": "up", "type": "symlink", "link": ".."},
        {"name": "up/escaped", "data": b"x"}]))
    put("flatten", "escape-hardlink.tar", tar_bytes([{"name": "passwd", "type": "hardlink", "link": "../sentinel"}]))
    put("flatten", "escape-symlink-then-hardlink", tar_bytes([
        {"name": "out", "type": "symlink", "link": "../sentinel"}]) + SEP + tar_bytes([
        {"name": "x", "type": "hardlink", "link": "out"}, {"name": "out", "data": b"over"}]))


# ---- kernels -----------------------------------------------------------------
def tiny_elf(with_note=True):
    """A minimal x86-64 ELF: header, one PT_NOTE with a Xen PVH note, a banner."""
    note = struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", 0x1000000)
    banner = b"Linux version 6.1.0-99-amd64 (fuzz@banger) #1 SMP\0"
    phoff = 64
    note_off = phoff + 56
    ehdr = (b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8 +
            struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, phoff, 0, 0, 64, 56,
                        1 if with_note else 0, 64, 0, 0))
    phdr = struct.pack("<IIQQQQQQ", 4, 4, note_off, 0, 0, len(note), len(note), 4)
    return ehdr + phdr + note + banner


def bzimage(payload, trailer=True, size=None):
    """A bzImage: boot sector + setup (setup_sects=1) then the payload."""
    setup_sects = 1
    hdr = bytearray(512 * (setup_sects + 1))
    hdr[0x1f1] = setup_sects
    hdr[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", hdr, 0x206, 0x020f)
    struct.pack_into("<H", hdr, 0x20e, 0x300 - 0x200)  # kernel_version pointer
    v = b"6.1.0-99-amd64 (fuzz@banger) #1\0"
    hdr[0x300:0x300 + len(v)] = v
    body = payload
    if trailer:
        body += struct.pack("<I", size)
    struct.pack_into("<I", hdr, 0x248, 0)
    struct.pack_into("<I", hdr, 0x24c, len(body))
    return bytes(hdr) + body


def kernel_seeds():
    elf = tiny_elf()
    put("vmlinux", "vmlinux.elf", elf)
    put("vmlinux", "bzimage-none", bzimage(elf, trailer=False))
    put("vmlinux", "bzimage-gzip", bzimage(gzip.compress(elf, mtime=0), trailer=False))
    put("vmlinux", "bzimage-xz", bzimage(lzma.compress(elf, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32), size=len(elf)))
    put("vmlinux", "bzimage-lzma", bzimage(lzma.compress(elf, format=lzma.FORMAT_ALONE), size=len(elf)))
    put("vmlinux", "bzimage-bzip2", bzimage(bz2.compress(elf), size=len(elf)))
    put("vmlinux", "bzimage-zstd", bzimage(compress_zstd(elf), size=len(elf)))
    lz4 = subprocess.run(["lz4", "-l", "-q", "-c"], input=elf, check=True, capture_output=True).stdout
    put("vmlinux", "bzimage-lz4", bzimage(lz4, size=len(elf)))
    put("vmlinux", "bzimage-wrong-size", bzimage(gzip.compress(elf + b"x", mtime=0), trailer=False))


# ---- agent protocol ----------------------------------------------------------
def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def pstr(s):
    s = s.encode() if isinstance(s, str) else s
    return u32(len(s)) + s
def strlist(v): return u32(len(v)) + b"".join(pstr(s) for s in v)
def frame(t, ch, payload=b""): return u32(5 + len(payload)) + u8(t) + u32(ch) + payload

HELLO, PING, PONG, EXEC, STARTED, STDIN, STDIN_EOF, STDOUT, STDERR, EXIT, RESIZE, SIGNAL, \
    POWEROFF, POWEROFF_ACK, ERROR, SET_HOSTS, SET_HOSTS_ACK, IDENTITY, IDENTITY_ACK = range(1, 20)


def set_hosts(entries):
    return u32(len(entries)) + b"".join(pstr(a) + strlist(n) for a, n in entries)


def agent_seeds():
    hello = frame(HELLO, 0, u32(1) + pstr("0.1.0") + u64(1234) + pstr("init"))
    # Host side: byte 0 picks the operation (0 hello, 1 ping, 2 exec, 3 set-hosts, 4 poweroff).
    put("agent_host", "hello", b"\0" + hello)
    put("agent_host", "ping", b"\1" + hello + frame(PONG, 0, u64(1)))
    put("agent_host", "exec", b"\2" + hello + frame(STARTED, 1, u32(42)) + frame(STDOUT, 1, b"hello\n") +
        frame(STDERR, 1, b"warn\n") + frame(STDOUT, 7, b"other channel") + frame(EXIT, 1, u8(0) + u32(3)))
    put("agent_host", "exec-signaled", b"\2" + frame(STARTED, 1, u32(42)) + frame(EXIT, 1, u8(1) + u32(9)))
    put("agent_host", "exec-error", b"\2" + frame(ERROR, 1, pstr("exec /bin/true: No such file or directory")) +
        frame(EXIT, 1, u8(0) + u32(127)))
    put("agent_host", "set-hosts", b"\3" + hello + frame(SET_HOSTS_ACK, 1, u32(1)))
    put("agent_host", "set-hosts-old", b"\3" + frame(ERROR, 1, pstr("unexpected message type 16")))
    put("agent_host", "identity", b"\5" + frame(HELLO, 0, u32(1) + pstr("0.1.0") + u64(1) + pstr("held")) +
        frame(PONG, 0, u64(1) + pstr("held")) + frame(IDENTITY_ACK, 1, u32(1) + pstr("0.1.0") + u64(2) + pstr("init")))
    put("agent_host", "poweroff", b"\4" + frame(POWEROFF_ACK, 0))
    put("agent_host", "bad-length", b"\2" + u32(0xffffffff) + b"xxxx")
    # Guest side: byte 0 seeds the read sizes.
    exec_req = strlist(["/bin/sh", "-c", "echo hi"]) + strlist(["A=1", "PATH=/bin"]) + pstr("/tmp") + u8(0) + u16(24) + u16(80)
    tty_req = strlist(["/bin/sh"]) + strlist([]) + pstr("") + u8(1) + u16(50) + u16(200)
    put("agent_guest", "session", b"\x07" + frame(PING, 0, u64(1)) + frame(EXEC, 1, exec_req) +
        frame(STDIN, 1, b"input\n") + frame(STDIN_EOF, 1) + frame(SIGNAL, 1, u32(15)) + frame(POWEROFF, 0))
    put("agent_guest", "tty", b"\x03" + frame(EXEC, 2, tty_req) + frame(RESIZE, 2, u16(40) + u16(120)) +
        frame(STDIN_EOF, 2))
    put("agent_guest", "builtin", b"\x01" + frame(EXEC, 3, strlist(["@banger/stat", "/etc"]) + strlist([]) +
                                               pstr("") + u8(0) + u16(24) + u16(80)))
    put("agent_guest", "set-hosts", b"\x05" + frame(SET_HOSTS, 4, set_hosts(
        [("10.0.0.2", ["web", "web.banger"]), ("10.0.0.3", ["db"])])))
    put("agent_guest", "set-hosts-empty", b"\x05" + frame(SET_HOSTS, 5, set_hosts([])))
    put("agent_guest", "set-hosts-bad", b"\x05" + frame(SET_HOSTS, 6, set_hosts([("10.0.0.2\nevil", ["a b"])])))
    identity = u64(1790000000 * 10**9) + pstr("52:54:00:12:34:56") + pstr(b"\x5a" * 64) + pstr('{"hostname": "a"}')
    put("agent_guest", "identity", b"\x02" + frame(PING, 0, u64(1)) + frame(IDENTITY, 9, identity) +
        frame(IDENTITY, 10, identity[:20]))
    put("agent_guest", "unexpected", b"\x00" + frame(HELLO, 0, b"") + frame(99, 0, b"?") + u32(3) + b"abc")
    put("agent_json", "config.json", """{
    "hostname": "web-1",
    "root_serial": "root", "root_fstype": "ext4", "agent_port": "banger.agent",
    "network": {"interface": "eth0", "address": "10.0.0.2", "prefix": 24, "gateway": "10.0.0.1", "dns": ["1.1.1.1"]},
    "files": [{"path": "/etc/motd", "content_base64": "aGk=", "mode": 384}],
    "volumes": [{"serial": "vol-data", "mount_path": "/var/lib/data"}],
    "hosts": [{"address": "10.99.0.7", "names": ["peer", "peer.banger"]}, {"address": "10.99.0.8", "names": ["db"]}],
    "authorized_keys": ["ssh-ed25519 AAAA test"],
    "env": {"A": "1"},
    "entrypoint": {"argv": ["sleep", "1000"], "env": {"B": "2"}, "workdir": "/tmp"},
    "init": "agent"
}""")
    put("agent_json", "values.json", '[1, -2.5e1, 1e999, "\\ud83d\\ude00", "\\u00e9\\n", true, false, null, {"a": {}}]')
    put("agent_json", "bad-hosts.json", '{"hosts": [{"address": "10.0.0.1\\nevil", "names": ["a"]}]}')


# ---- DNS -------------------------------------------------------------------------
def wire_name(dotted):
    out = b""
    for label in [l for l in dotted.split(".") if l]:
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(qid, name, qtype=1, qclass=1, flags=0x0100, extra=b""):
    return struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if extra else 0) + wire_name(name) + \
        struct.pack(">HH", qtype, qclass) + extra


def dns_seeds():
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    put("dns", "a-web-banger", query(0x1234, "web.banger"))
    put("dns", "a-web-mixedcase", query(0x1235, "WeB.BaNgEr"))
    put("dns", "aaaa-db", query(2, "db.banger", qtype=28))
    put("dns", "soa-zone", query(3, "banger", qtype=6))
    put("dns", "nx", query(4, "missing.banger"))
    put("dns", "bare-name", query(5, "web"))
    put("dns", "refused", query(6, "example.com"))
    put("dns", "any-edns", query(7, "web.banger", qtype=255, extra=opt))
    put("dns", "axfr", query(8, "banger", qtype=252))
    put("dns", "notify-opcode", query(9, "web.banger", flags=0x2000))
    put("dns", "compression-pointer", struct.pack(">HHHHHH", 10, 0x100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", 1, 1))


def main():
    for fn in (spec_seeds, oci_seeds, flatten_seeds, kernel_seeds, agent_seeds, dns_seeds):
        fn()
    print("seeds written under", CORPUS)


if __name__ == "__main__":
    sys.exit(main())

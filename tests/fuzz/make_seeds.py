#!/usr/bin/python3
"""Writes the generated part of the seed corpora of tests/fuzz/corpus/ (run from
anywhere; Debian's python3 with grpc_tools and openssl). Hand-made regression
inputs live beside them as regress-*; this script leaves those alone."""
import glob
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.abspath(os.path.join(HERE, "..", ".."))
FIX = os.path.join(SRC, "tests", "fixtures")
CORPUS = os.path.join(HERE, "corpus")


def put(kind, name, data):
    os.makedirs(os.path.join(CORPUS, kind), exist_ok=True)
    with open(os.path.join(CORPUS, kind, name), "wb") as f:
        f.write(data)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def toml_seeds():
    for p in sorted(glob.glob(os.path.join(FIX, "config", "*.toml")) +
                    glob.glob(os.path.join(FIX, "services", "*.toml"))):
        put("toml", os.path.basename(p), read(p))
    put("toml", "datetimes.toml", b'a = 1979-05-27T07:32:00Z\nb = 1979-05-27\nc = 07:32:00.5\n'
        b'd = [1, 2.5e3, "x", \'y\', """m\nl""", {i = inf, n = nan}]\n[[t.u]]\nv = 0x1F\n')
    for p in sorted(glob.glob(os.path.join(FIX, "config", "*.toml")) +
                    glob.glob(os.path.join(FIX, "bad", "config_*.toml"))):
        put("config", os.path.basename(p), read(p))
    for p in sorted(glob.glob(os.path.join(FIX, "services", "*.toml")) +
                    glob.glob(os.path.join(FIX, "bad", "svc_*.toml"))):
        put("service", os.path.basename(p), read(p))


def podman_seeds():
    pod = os.path.join(FIX, "podman")
    for p in sorted(glob.glob(os.path.join(pod, "ps*.json"))):
        put("podman", "list-" + os.path.basename(p), b"\x00" + read(p))
    for p in sorted(glob.glob(os.path.join(pod, "inspect*.json"))):
        put("podman", "inspect-" + os.path.basename(p), b"\x01" + read(p))
    for i, line in enumerate(read(os.path.join(pod, "events.jsonl")).splitlines()[:8]):
        put("podman", "event-%d" % i, b"\x02" + line)
    put("podman", "run-id", b"\x03  4f1a2b3c4d5e6f\n")
    for i, t in enumerate([b"2026-12-01T22:47:32.318817944Z", b"2026-12-01T22:47:32+01:00",
                           b"0001-01-01T00:00:00Z"]):
        put("podman", "time-%d" % i, b"\x04" + t)


def pb_seeds(tmp):
    out = os.path.join(tmp, "py")
    os.makedirs(out)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I" + os.path.join(SRC, "proto"),
                    "--python_out=" + out, "mcp/agent/v1/agent.proto"], check=True, timeout=60)
    sys.path.insert(0, out)
    from mcp.agent.v1 import agent_pb2 as pb
    # the order of types[] in fuzz_pbconv.c
    order = ["DeployRequest", "DeployResponse", "ServiceRequest", "ComponentResult",
             "ServiceResponse", "ListServicesRequest", "ListServicesResponse", "ServiceInfo",
             "ComponentInfo", "PortMapping", "RouteStatus", "Event", "WatchEventsRequest",
             "ComponentStatus", "ServiceStatus", "RecoverRequest", "RecoverEntry",
             "RecoverReport", "BootStatusRequest", "BootServiceStatus", "BootStage",
             "BootStatusResponse", "NodeStatusRequest", "NodeStatusResponse"]
    svc = read(os.path.join(FIX, "services", "multi.toml")).decode()
    msgs = {
        "DeployRequest": pb.DeployRequest(service_toml=svc, source="multi.toml"),
        "DeployResponse": pb.DeployResponse(ok=True, messages=["a", "b"], results=[
            pb.ComponentResult(component="web", ok=True, container="s-web", detail="started")]),
        "ServiceRequest": pb.ServiceRequest(service="s", component="web"),
    }
    for name in order:
        m = msgs.get(name) or getattr(pb, name)()
        put("pbconv", name, bytes([order.index(name)]) + m.SerializeToString())
    # every field of every type set to something, from the descriptors
    for name in order:
        m = getattr(pb, name)()
        fill(m, 2)
        put("pbconv", name + "-full", bytes([order.index(name)]) + m.SerializeToString())


def fill(m, depth):
    from google.protobuf.descriptor import FieldDescriptor as F
    for f in m.DESCRIPTOR.fields:
        rep = f.label == F.LABEL_REPEATED
        if f.type == F.TYPE_MESSAGE:
            if depth <= 0:
                continue
            sub = getattr(m, f.name).add() if rep else getattr(m, f.name)
            fill(sub, depth - 1)
            continue
        if f.type == F.TYPE_STRING:
            v = "v-" + f.name
        elif f.type == F.TYPE_BOOL:
            v = True
        elif f.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            v = 1.5
        elif f.type == F.TYPE_ENUM:
            v = 1
        elif f.type in (F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_FIXED32, F.TYPE_FIXED64):
            v = 7
        else:
            v = -7
        if rep:
            getattr(m, f.name).extend([v, v])
        else:
            setattr(m, f.name, v)


# ---- HTTP/2 by hand: frames and HPACK literals without Huffman ----
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def hpack(headers):
    out = b""
    for k, v in headers:
        out += b"\x00" + bytes([len(k)]) + k + bytes([len(v)]) + v
    return out


def grpc_msg(body):
    return b"\x00" + struct.pack(">I", len(body)) + body


def call(sid, path, body, extra=()):
    hs = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path),
          (b":authority", b"localhost"), (b"content-type", b"application/grpc"),
          (b"te", b"trailers")] + list(extra)
    return frame(1, 4, sid, hpack(hs)) + frame(0, 1, sid, grpc_msg(body))


def grpc_seeds():
    settings = frame(4, 0, 0, b"")
    ack = frame(4, 1, 0, b"")
    ls = b"/mcp.agent.v1.AgentService/ListServices"
    put("grpc_conn", "preface", PREFACE)
    put("grpc_conn", "unary", PREFACE + settings + ack + call(1, ls, b""))
    put("grpc_conn", "timeout", PREFACE + settings + call(1, ls, b"x", [(b"grpc-timeout", b"1m")]))
    put("grpc_conn", "three-calls", PREFACE + settings + call(1, ls, b"abc") +
        call(3, b"/fuzz.F/Fail", b"") + call(5, b"/fuzz.F/Stream", b"0123456789"))
    put("grpc_conn", "hold-rst", PREFACE + settings + call(1, b"/fuzz.F/Hold", b"q") +
        frame(3, 0, 1, struct.pack(">I", 8)))
    put("grpc_conn", "unknown", PREFACE + settings + call(1, b"/no.Such/Method", b""))
    put("grpc_conn", "bad-ctype", PREFACE + settings + frame(1, 5, 1, hpack(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", ls),
         (b"content-type", b"text/plain")])))
    put("grpc_conn", "split-msg", PREFACE + settings + frame(1, 4, 1, hpack(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", ls),
         (b":authority", b"a"), (b"content-type", b"application/grpc+proto")])) +
        frame(0, 0, 1, b"\x00\x00\x00") + frame(0, 0, 1, b"\x00\x04ab") + frame(0, 1, 1, b"cd"))
    put("grpc_conn", "ping-window-goaway", PREFACE + settings + frame(6, 0, 0, b"12345678") +
        frame(8, 0, 0, struct.pack(">I", 65535)) + call(1, ls, b"") +
        frame(7, 0, 0, struct.pack(">II", 1, 0)))
    put("grpc_conn", "too-large", PREFACE + settings + frame(1, 4, 1, hpack(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", ls),
         (b":authority", b"a"), (b"content-type", b"application/grpc")])) +
        frame(0, 0, 1, b"\x00\x7f\xff\xff\xff"))
    put("grpc_conn", "compressed", PREFACE + settings + frame(1, 4, 1, hpack(
        [(b":method", b"POST"), (b":scheme", b"http"), (b":path", ls),
         (b":authority", b"a"), (b"content-type", b"application/grpc")])) +
        frame(0, 1, 1, b"\x01\x00\x00\x00\x00"))


def certs_seeds(tmp):
    key, crt = os.path.join(tmp, "k.pem"), os.path.join(tmp, "c.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "3650", "-subj", "/CN=svc.example.com",
                    "-addext", "subjectAltName=DNS:svc.example.com,DNS:*.example.com"],
                   check=True, timeout=60, capture_output=True)
    k, c = read(key), read(crt)
    import json
    ok = json.dumps({"certificate": c.decode(), "private_key": k.decode(),
                     "ca_chain": c.decode()}).encode()
    put("certs", "answer-ok", b"\x00" + ok)
    put("certs", "answer-no-key", b"\x00" + json.dumps({"certificate": c.decode()}).encode())
    put("certs", "refused", b"\x01" + b'{"error": "permission denied"}')
    put("certs", "pem", b"\x02" + c)
    put("certs", "pair", b"\x03" + c + b"\n" + k)


def main():
    tmp = tempfile.mkdtemp()
    try:
        toml_seeds()
        podman_seeds()
        pb_seeds(tmp)
        grpc_seeds()
        certs_seeds(tmp)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()

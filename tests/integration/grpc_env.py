"""grpc_env: what the gRPC integration tests share (stdlib plus grpcio-tools).

Python stubs generated from proto/ at test time, a small certificate
authority made with the openssl CLI (argv, never a shell), and raw HTTP/2
byte strings for feeding a server broken connections. Used by
test_grpc_server.py, test_daemon.py and test_daemon_edges.py.
"""
import os
import shutil
import struct
import subprocess
import sys

SOURCE_DIR = os.environ.get("MCP_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
PYTHON = "/usr/bin/python3"


# ---- stubs ---------------------------------------------------------------------------


def gen_stubs(tmp):
    """(agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc) generated from proto/
    into tmp/py, which goes first on sys.path. health.proto is compiled under
    another package path ('hc'): a generated 'grpc' package would shadow grpcio."""
    out, src = os.path.join(tmp, "py"), os.path.join(tmp, "protosrc")
    os.makedirs(os.path.join(src, "hc"))
    os.makedirs(out)
    shutil.copy(os.path.join(SOURCE_DIR, "proto", "grpc", "health", "v1", "health.proto"),
                os.path.join(src, "hc", "health.proto"))
    for inc, proto in ((src, "hc/health.proto"),
                       (os.path.join(SOURCE_DIR, "proto"), "mcp/agent/v1/agent.proto")):
        subprocess.run([PYTHON, "-m", "grpc_tools.protoc", "-I" + inc, "--python_out=" + out,
                        "--grpc_python_out=" + out, proto], check=True, timeout=60)
    sys.path.insert(0, out)
    from hc import health_pb2, health_pb2_grpc
    from mcp.agent.v1 import agent_pb2, agent_pb2_grpc
    return agent_pb2, agent_pb2_grpc, health_pb2, health_pb2_grpc


# ---- certificates --------------------------------------------------------------------


def openssl(*args, cwd):
    """Runs the openssl CLI in cwd (30 s at most); raises when it fails."""
    subprocess.run(["openssl", *args], cwd=cwd, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(d, name):
    """A self-signed CA in d: name.pem and name.key, valid for 2 days."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
            "-subj", "/CN=" + name, cwd=d)


def make_leaf(d, name, ca, ext):
    """name.pem + name.key in d, signed by the CA ca (in d), with the
    extensions in ext (openssl extfile lines), valid for 2 days."""
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext",
            cwd=d)


def make_certs(d):
    """In the existing directory d: ca, server (localhost and 127.0.0.1, by ca),
    client (by ca) and stranger (a client certificate from otherca)."""
    make_ca(d, "ca")
    make_ca(d, "otherca")
    make_leaf(d, "server", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
              "extendedKeyUsage=serverAuth\n")
    make_leaf(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_leaf(d, "stranger", "otherca", "extendedKeyUsage=clientAuth\n")


# ---- raw HTTP/2 ------------------------------------------------------------------------

# The client connection preface.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# A SETTINGS frame announcing 60 bytes of payload with only 6 of them sent.
TRUNCATED_SETTINGS = PREFACE + struct.pack(">I", 60)[1:] + b"\x04\x00\x00\x00\x00\x00" + b"\0" * 6

# An empty SETTINGS, then a HEADERS frame announcing 200 bytes, cut inside its header block.
CUT_HEADERS = (PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" +
               struct.pack(">I", 200)[1:] + b"\x01\x04\x00\x00\x00\x01" + b"\x82\x86")

# A frame claiming 16 MiB - 1 bytes, beyond SETTINGS_MAX_FRAME_SIZE: servers must hang up.
OVERSIZED_FRAME = PREFACE + b"\xff\xff\xff\x00\x00\x00\x00\x00\x01" + b"x" * 100

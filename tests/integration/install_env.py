"""install_env: install the build into a temp prefix (stdlib only), and run
a program with the source tree hidden behind an empty tmpfs (a private mount
namespace; needs root), so an installed binary provably loads nothing from
the tree it was built in."""
import ctypes
import os
import shutil
import subprocess
import tempfile

from agent_env import BUILD_DIR, SOURCE_DIR

CLONE_NEWNS = 0x00020000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def install(prefix, destdir=None, timeout=120):
    """cmake --install BUILD_DIR --prefix prefix [with DESTDIR]; returns the CompletedProcess."""
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    return subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=True)


def _hide_source_tree():
    """preexec_fn: an empty tmpfs over SOURCE_DIR in a private mount namespace."""
    if _libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if _libc.mount(b"tmpfs", SOURCE_DIR.encode(), b"tmpfs", 0, b"size=1m") != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs over the source tree")


def run_hidden(argv, timeout=60, env=None, cwd="/"):
    """Runs argv with the source tree hidden; returns the CompletedProcess."""
    return subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, preexec_fn=_hide_source_tree)


def scratch_dir(name):
    """A temp dir outside the source tree (which run_hidden hides)."""
    return tempfile.mkdtemp(prefix="mcp-%s-" % name, dir="/tmp")


def remove(path):
    if not os.environ.get("MCP_KEEP_TMP"):
        shutil.rmtree(path, ignore_errors=True)

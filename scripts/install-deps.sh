#!/usr/bin/env bash
# Installs everything mcp-agent needs to build, test and demo on Debian 12.
# Run as root (or through sudo). Idempotent.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then
    exec sudo "$0" "$@"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    build-essential cmake pkg-config git ca-certificates procps \
    lua5.4 liblua5.4-dev lua-cjson lua-busted lua-check docker-registry \
    sqlite3 libsqlite3-dev libuv1-dev libjansson-dev \
    libcurl4-openssl-dev libnghttp2-dev libssl-dev openssl \
    libprotobuf-c-dev protobuf-c-compiler libcmocka-dev \
    libmicrohttpd-dev prometheus \
    podman runc busybox-static \
    python3 python3-grpcio python3-grpc-tools nghttp2-client hyperfine \
    libsystemd-dev systemd scdoc mandoc man-db bash-completion file dpkg-dev \
    clang-16 libclang-rt-16-dev

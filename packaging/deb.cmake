# The .deb (`cpack -G DEB` in the build dir): installs under /usr with the
# config in /etc/mcp-agent as a conffile, enables and starts the unit.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mcp-agent)
set(CPACK_PACKAGE_VENDOR "mcp-agent")
set(CPACK_PACKAGE_CONTACT "mcp-agent maintainers <root@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "node agent: desired state in SQLite, containers in podman, policy in Lua")
set(CPACK_PACKAGE_DESCRIPTION
    "mcp-agent keeps a node's services in a SQLite registry and makes podman match\nit, with boot order, recover and supervision as Lua policies. Runs as the\nsystemd service mcp-agent.service (Type=notify, watchdog).")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: the shared libraries the binary links (dpkg-shlibdeps), plus what
# it loads or runs itself: libcurl, libsystemd and libmicrohttpd (dlopen on
# first use, so dpkg-shlibdeps does not see them), Lua's cjson, podman.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libcurl4, libsystemd0, libmicrohttpd12, lua-cjson, podman")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "runc, bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/debian/conffiles;${PROJECT_SOURCE_DIR}/packaging/debian/postinst;${PROJECT_SOURCE_DIR}/packaging/debian/prerm;${PROJECT_SOURCE_DIR}/packaging/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

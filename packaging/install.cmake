# Installs what makes mcp-agent a system service. Paths follow the install
# prefix chosen at install time (`cmake --install build --prefix P`), so
# they are computed in install(CODE), not at configure time.

# The unit: lib/systemd/system under the prefix (/usr/lib/systemd/system
# for the .deb). @BINDIR@ becomes PREFIX/bin.
install(CODE "
  file(READ \"${PROJECT_SOURCE_DIR}/packaging/mcp-agent.service.in\" unit)
  string(REPLACE \"@BINDIR@\" \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\" unit \"\${unit}\")
  file(WRITE \"${PROJECT_BINARY_DIR}/packaging/mcp-agent.service\" \"\${unit}\")
  file(INSTALL \"${PROJECT_BINARY_DIR}/packaging/mcp-agent.service\"
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
")

# The example config: SYSCONFDIR/mcp-agent (/etc/mcp-agent for prefix /usr),
# only when none is there. The .deb marks it a conffile, so dpkg keeps an
# edited one on upgrade.
if(IS_ABSOLUTE "${CMAKE_INSTALL_SYSCONFDIR}")
  set(MCP_CONFDIR_CODE "${CMAKE_INSTALL_SYSCONFDIR}/mcp-agent")
else()
  set(MCP_CONFDIR_CODE "\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SYSCONFDIR}/mcp-agent")
endif()
install(CODE "
  set(confdir \"${MCP_CONFDIR_CODE}\")
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(confdir \"/etc/mcp-agent\")
  endif()
  if(EXISTS \"\$ENV{DESTDIR}\${confdir}/mcp-agent.toml\")
    message(STATUS \"Keeping: \$ENV{DESTDIR}\${confdir}/mcp-agent.toml\")
  else()
    file(INSTALL \"${PROJECT_SOURCE_DIR}/examples/mcp-agent.toml\" DESTINATION \"\${confdir}\"
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
  endif()
")

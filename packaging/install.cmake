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

# Man pages: scdoc sources in man/; the COMMANDS section of mcp-agent(8)
# comes from the built binary's command table (`mcp-agent complete scdoc`).
find_program(SCDOC scdoc)
if(SCDOC)
  set(MCP_MAN_DIR ${PROJECT_BINARY_DIR}/man)
  add_custom_command(OUTPUT ${MCP_MAN_DIR}/mcp-agent.8
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MCP_MAN_DIR}
    COMMAND ${CMAKE_COMMAND} -DAGENT=$<TARGET_FILE:mcp-agent>
            -DIN=${PROJECT_SOURCE_DIR}/man/mcp-agent.8.scd.in -DOUT=${MCP_MAN_DIR}/mcp-agent.8.scd
            -P ${PROJECT_SOURCE_DIR}/packaging/man-commands.cmake
    COMMAND ${SCDOC} < ${MCP_MAN_DIR}/mcp-agent.8.scd > ${MCP_MAN_DIR}/mcp-agent.8
    DEPENDS mcp-agent ${PROJECT_SOURCE_DIR}/man/mcp-agent.8.scd.in
            ${PROJECT_SOURCE_DIR}/packaging/man-commands.cmake
    VERBATIM)
  set(MCP_MAN_PAGES ${MCP_MAN_DIR}/mcp-agent.8)
  foreach(page mcp-agent.toml.5 mcp-agent-policy.7)
    add_custom_command(OUTPUT ${MCP_MAN_DIR}/${page}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${MCP_MAN_DIR}
      COMMAND ${SCDOC} < ${PROJECT_SOURCE_DIR}/man/${page}.scd > ${MCP_MAN_DIR}/${page}
      DEPENDS ${PROJECT_SOURCE_DIR}/man/${page}.scd
      VERBATIM)
    list(APPEND MCP_MAN_PAGES ${MCP_MAN_DIR}/${page})
  endforeach()
  add_custom_target(man ALL DEPENDS ${MCP_MAN_PAGES})
  install(FILES ${MCP_MAN_DIR}/mcp-agent.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
  install(FILES ${MCP_MAN_DIR}/mcp-agent.toml.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
  install(FILES ${MCP_MAN_DIR}/mcp-agent-policy.7 DESTINATION ${CMAKE_INSTALL_MANDIR}/man7)
else()
  message(WARNING "scdoc not found: no man pages (scripts/install-deps.sh installs it)")
endif()

# Bash completion, where bash-completion looks for it on demand.
install(FILES ${PROJECT_SOURCE_DIR}/completion/mcp-agent.bash
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME mcp-agent)

# The example config and service files, for the operator to copy from.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples
        FILES_MATCHING PATTERN "*.toml")

include(${PROJECT_SOURCE_DIR}/packaging/deb.cmake)

# Protocol buffers: every proto/**/*.proto → protoc-c → C sources in the build
# tree (generated at build time), compiled into the static library mcp_proto.
# Code includes the generated headers by their proto path, e.g.
#   #include "mcp/agent/v1/agent.pb-c.h"

find_program(PROTOC_C protoc-c REQUIRED)

set(MCP_PROTO_DIR ${PROJECT_SOURCE_DIR}/proto)
set(MCP_PROTO_OUT ${PROJECT_BINARY_DIR}/proto-gen)
file(GLOB_RECURSE MCP_PROTO_FILES CONFIGURE_DEPENDS ${MCP_PROTO_DIR}/*.proto)

set(MCP_PROTO_SOURCES "")
set(MCP_PROTO_HEADERS "")
foreach(proto ${MCP_PROTO_FILES})
  file(RELATIVE_PATH rel ${MCP_PROTO_DIR} ${proto})
  string(REGEX REPLACE "\\.proto$" "" stem ${rel})
  set(gen_c ${MCP_PROTO_OUT}/${stem}.pb-c.c)
  set(gen_h ${MCP_PROTO_OUT}/${stem}.pb-c.h)
  add_custom_command(
    OUTPUT ${gen_c} ${gen_h}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MCP_PROTO_OUT}
    COMMAND ${PROTOC_C} --proto_path=${MCP_PROTO_DIR} --c_out=${MCP_PROTO_OUT} ${rel}
    DEPENDS ${proto}
    WORKING_DIRECTORY ${MCP_PROTO_DIR}
    COMMENT "protoc-c ${rel}"
    VERBATIM)
  list(APPEND MCP_PROTO_SOURCES ${gen_c})
  list(APPEND MCP_PROTO_HEADERS ${gen_h})
endforeach()

add_library(mcp_proto STATIC ${MCP_PROTO_SOURCES} ${MCP_PROTO_HEADERS})
target_include_directories(mcp_proto PUBLIC ${MCP_PROTO_OUT})
target_link_libraries(mcp_proto PUBLIC PkgConfig::PROTOBUFC)

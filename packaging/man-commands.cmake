# cmake -DAGENT=BIN -DIN=page.scd.in -DOUT=page.scd -P man-commands.cmake:
# fills @COMMANDS@ with the binary's own command table, in scdoc.
execute_process(COMMAND ${AGENT} complete scdoc OUTPUT_VARIABLE commands
                RESULT_VARIABLE rc TIMEOUT 30)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${AGENT} complete scdoc failed: ${rc}")
endif()
file(READ ${IN} page)
string(REPLACE "@COMMANDS@" "${commands}" page "${page}")
file(WRITE ${OUT} "${page}")

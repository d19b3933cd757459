# weft-run across machines: tests with a real nats-server (each starts its own on a free port; they pass
# as skipped, saying so, when nats-server is not installed). Included by ../CMakeLists.txt when weft's
# JetStream module is built.
foreach(t nats-basic nats-crash nats-signals)
  add_test(NAME weft_run_${t} COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/${t}.sh $<TARGET_FILE:weft-run>)
  set_tests_properties(weft_run_${t} PROPERTIES PASS_REGULAR_EXPRESSION "${t} check passed" TIMEOUT 300)
endforeach()

# Builds tests/consumer/main.cpp against an installed copy with nothing but pkg-config's flags, as a
# Makefile user would, and runs it. Then checks the rest of the installed package: kvc-eval (when
# the engine was built) and the documentation.
#   cmake -DPREFIX=... -DLIBDIR=lib -DWORK=... -DCXX=... "-DCXXFLAGS=..." -DSOURCE=.../main.cpp
#         -DEXPECTED_VERSION=0.1.0 [-DWITH_EVAL=ON] -P pkg_config.cmake
# CXXFLAGS are the build's own (a sanitizer build's library needs its runtime at link time).
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
execute_process(COMMAND pkg-config --cflags --libs kvcompress OUTPUT_VARIABLE flags RESULT_VARIABLE failed
                ERROR_VARIABLE why OUTPUT_STRIP_TRAILING_WHITESPACE)
if(failed)
  message(FATAL_ERROR "pkg-config --cflags --libs kvcompress failed: ${why}")
endif()
message(STATUS "pkg-config --cflags --libs kvcompress: ${flags}")
foreach(expected "-I${PREFIX}/include" "-L${PREFIX}/${LIBDIR}" "-lkvcompress" "-lfmt")
  string(FIND " ${flags} " " ${expected} " at)
  if(at EQUAL -1)
    message(FATAL_ERROR "pkg-config flags '${flags}' lack '${expected}'")
  endif()
endforeach()
execute_process(COMMAND pkg-config --modversion kvcompress OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT version STREQUAL EXPECTED_VERSION)
  message(FATAL_ERROR "pkg-config --modversion kvcompress is '${version}', expected '${EXPECTED_VERSION}'")
endif()

separate_arguments(flag_list UNIX_COMMAND "${CXXFLAGS} ${flags}")
file(MAKE_DIRECTORY ${WORK})
execute_process(COMMAND ${CXX} ${SOURCE} -o ${WORK}/consumer ${flag_list} RESULT_VARIABLE failed ERROR_VARIABLE why)
if(failed)
  message(FATAL_ERROR "building the consumer with pkg-config's flags failed:\n${why}")
endif()
execute_process(COMMAND ${WORK}/consumer OUTPUT_VARIABLE said RESULT_VARIABLE failed)
if(failed OR NOT said MATCHES "consumer ok")
  message(FATAL_ERROR "the consumer built with pkg-config's flags failed: ${said}")
endif()

foreach(doc README.md LICENSE CHANGELOG.md evaluation.md getting-started.md architecture.md)
  if(NOT EXISTS ${PREFIX}/share/doc/kvcompress/${doc})
    message(FATAL_ERROR "the documentation ${doc} is not installed in ${PREFIX}/share/doc/kvcompress")
  endif()
endforeach()
if(WITH_EVAL)
  execute_process(COMMAND ${PREFIX}/bin/kvc-eval --list OUTPUT_VARIABLE said RESULT_VARIABLE failed)
  if(failed OR NOT said MATCHES "Parameters")
    message(FATAL_ERROR "the installed kvc-eval --list failed (${failed}): ${said}")
  endif()
endif()
message(STATUS "consumer ok: ${said}")

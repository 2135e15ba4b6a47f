include(CMakePackageConfigHelpers)

install(TARGETS kvc kvc_c EXPORT kvcompressTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/kvc DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(KVC_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/kvcompress)
install(EXPORT kvcompressTargets NAMESPACE kvc:: DESTINATION ${KVC_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/kvcompressConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/kvcompressConfig.cmake INSTALL_DESTINATION ${KVC_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/kvcompressConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/kvcompressConfig.cmake ${PROJECT_BINARY_DIR}/kvcompressConfigVersion.cmake
        DESTINATION ${KVC_CMAKE_DIR})

# pkg-config: kvcompress.pc gets its prefix at install time, so `cmake --install --prefix DIR` (the
# packaging test) and the configured CMAKE_INSTALL_PREFIX both give a file that points at the copy.
set(KVC_PC_PREFIX "@CMAKE_INSTALL_PREFIX@")
configure_file(${PROJECT_SOURCE_DIR}/cmake/kvcompress.pc.in ${PROJECT_BINARY_DIR}/kvcompress.pc.in @ONLY)
install(CODE "configure_file(\"${PROJECT_BINARY_DIR}/kvcompress.pc.in\" \"${PROJECT_BINARY_DIR}/kvcompress.pc\" @ONLY)")
install(FILES ${PROJECT_BINARY_DIR}/kvcompress.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The documentation, beside the licence and the changelog.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} PATTERN Doxyfile EXCLUDE)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md ${PROJECT_SOURCE_DIR}/LICENSE
        DESTINATION ${CMAKE_INSTALL_DOCDIR})

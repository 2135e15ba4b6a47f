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

# Install rules and the Debian package (README, "Installing"): `cpack -G DEB` in a build dir,
# or scripts/package. Everything goes where a Debian package puts it:
#   /usr/sbin/splicer                  the daemon
#   /etc/splicer/splicer.conf          conffile: the embedded default, written out at build time
#   /usr/share/man/man{5,8}/           splicer.conf(5), splicer(8)
#   /lib/systemd/system/               whatever dist/systemd/ holds (the units)
# bpffs needs no unit: systemd mounts /sys/fs/bpf (mode=700) at boot on Debian 12
# (mount-setup.c), and `splicer run` mounts it itself where nothing is mounted there.

set(SPLICER_DIST_OUT ${CMAKE_BINARY_DIR}/dist)
file(MAKE_DIRECTORY ${SPLICER_DIST_OUT})

# The conffile, written by the code that holds the default (config/default_config.cpp).
add_executable(splicer_write_default_config ${CMAKE_SOURCE_DIR}/dist/write_default_config.cpp)
target_compile_options(splicer_write_default_config PRIVATE ${SPLICER_WARNINGS})
target_link_libraries(splicer_write_default_config PRIVATE splicer_core)
add_custom_command(
  OUTPUT ${SPLICER_DIST_OUT}/splicer.conf
  COMMAND splicer_write_default_config > ${SPLICER_DIST_OUT}/splicer.conf
  DEPENDS splicer_write_default_config
  COMMENT "Default configuration dist/splicer.conf")

# Man pages, compressed as Debian installs them (gzip -n: no name or time stamp inside).
set(SPLICER_MAN_PAGES)
foreach(page splicer.8 splicer.conf.5)
  add_custom_command(
    OUTPUT ${SPLICER_DIST_OUT}/${page}.gz
    COMMAND gzip -9n < ${CMAKE_SOURCE_DIR}/dist/man/${page} > ${SPLICER_DIST_OUT}/${page}.gz
    DEPENDS ${CMAKE_SOURCE_DIR}/dist/man/${page}
    COMMENT "Man page ${page}.gz")
  list(APPEND SPLICER_MAN_PAGES ${SPLICER_DIST_OUT}/${page}.gz)
endforeach()
add_custom_target(splicer_dist_files ALL
                  DEPENDS ${SPLICER_DIST_OUT}/splicer.conf ${SPLICER_MAN_PAGES})

install(TARGETS splicer RUNTIME DESTINATION sbin)
install(FILES ${SPLICER_DIST_OUT}/splicer.conf DESTINATION /etc/splicer)
install(FILES ${SPLICER_DIST_OUT}/splicer.8.gz DESTINATION share/man/man8)
install(FILES ${SPLICER_DIST_OUT}/splicer.conf.5.gz DESTINATION share/man/man5)
# OPTIONAL: the units are written apart from this file; until they exist there is nothing to
# install, and whatever appears in dist/systemd/ later is installed without a change here.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/dist/systemd/ DESTINATION /lib/systemd/system OPTIONAL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME splicer)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "share ports 443 and 80 between services, the kernel moving the bytes")
set(CPACK_PACKAGE_DESCRIPTION
    "splicer reads the first bytes of each connection on port 443 (a TLS ClientHello's SNI and
ALPN, or an XMPP, SSH, HTTP or OpenVPN opening), picks a backend by rules and lets the kernel
move every later byte (an eBPF sockmap verdict, or io_uring splice). On port 80 it is an
HTTP/1.1 reverse proxy. Its configuration is a superset of sslh's.")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # splicer_VERSION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "splicer developers <root@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
# Runtime dependencies from the binary's shared libraries (dpkg-shlibdeps), plus adduser for
# postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS adduser)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${CMAKE_SOURCE_DIR}/dist/debian/conffiles ${CMAKE_SOURCE_DIR}/dist/debian/postinst
    ${CMAKE_SOURCE_DIR}/dist/debian/prerm ${CMAKE_SOURCE_DIR}/dist/debian/postrm)
# Maintainer scripts 0755, conffiles 0644, whatever the checkout's modes are.
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)

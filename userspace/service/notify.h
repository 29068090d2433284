#pragma once
// Telling systemd where the daemon is in its life (sd_notify(3), Type=notify units): READY=1
// once every listener is bound and the loop is about to serve, RELOADING=1 when a SIGHUP's
// reload starts and READY=1 again when it is over (applied or refused: either way the daemon
// serves again), STOPPING=1 when a stop signal arrived. Outside systemd (no NOTIFY_SOCKET)
// each call does nothing. Safe from any thread: every call sends one datagram of its own.

#include <string>

namespace splicer::service {

// READY=1, with a STATUS= line for `systemctl status`.
void notify_ready(const std::string& status);
// RELOADING=1 with MONOTONIC_USEC (the clock systemd 253's Type=notify-reload compares with the
// time it sent the signal; systemd 252, Debian 12's, ignores it).
void notify_reloading();
void notify_stopping();
// After `splicer upgrade`, from the old process (the one systemd knows, NotifyAccess=main):
// MAINPID= names the new process, which systemd follows from then on.
void notify_main_pid(int pid);

}  // namespace splicer::service

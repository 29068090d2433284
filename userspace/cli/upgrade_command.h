#pragma once
// `splicer upgrade --pid PID`: SIGUSR2 to the running daemon, which hands its listeners to the
// binary installed at its path now (README "Upgrading without dropping connections").

#include <sys/types.h>

#include <ostream>

namespace splicer::cli {

// 0 when signalled; 1 (with a message on `err`) when PID is not a splicer daemon or the
// signal could not be sent.
int upgrade_command(pid_t pid, std::ostream& out, std::ostream& err);

}  // namespace splicer::cli

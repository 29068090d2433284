#pragma once
// The privileged helper's side of privilege separation (README "Privileges"), after OpenSSH's
// monitor: a process that keeps root after the worker drops it, does no network input, parses
// no client bytes, and answers one request from the worker: "the files". It then reads the
// config file root chose at start (--config, else /etc/splicer/splicer.conf) and every file
// that config names, and sends them back as one FileBundle (privsep/file_bundle.h).
// The worker is the exposed process, so its messages are hostile: a request carries no path
// and no argument (anything but the one request byte is logged and ignored), and every path
// the helper reads comes from the root-owned configuration, never from the worker.

#include <filesystem>
#include <vector>

#include "privsep/file_bundle.h"
#include "splicer/config.h"
#include "splicer/unique_fd.h"

namespace splicer::privsep {

// The one request the worker may send, a single byte in a seqpacket record.
inline constexpr char kRequestFiles = 'F';

// Files a configuration names besides itself, read for the worker at each reload: the https
// section's certificates, keys, OCSP responses and the routes' CA files.
std::vector<std::filesystem::path> files_named_by(const config::Config& config);

// What one request is answered with: `config_path`, then the files its content names.
FileBundle read_config_files(const std::filesystem::path& config_path);

// The helper's whole life, in the child of a fork (privsep/helper_link.h): closes every fd
// but stdio and `socket`, ignores the stop and reload signals (those are the worker's; the
// helper ends when the worker does), answers requests until the worker's end of the socket
// closes, logs that and exits. Never returns: the forked copies of the start-up objects
// (pins, the data plane) belong to the worker, and their destructors must not run here.
[[noreturn]] void run_helper(int socket, const std::filesystem::path& config_path);

}  // namespace splicer::privsep

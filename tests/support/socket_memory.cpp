#include "support/socket_memory.h"

#include <algorithm>
#include <cstdint>
#include <regex>
#include <stdexcept>

#include "support/command.h"

namespace splicer::test {

SocketMemory socket_memory(const std::string& ss_filter) {
    const CommandResult result = run_command("ss -tmnH state established '" + ss_filter + "'");
    if (result.exit_code != 0) {
        throw std::runtime_error("ss failed: " + result.output);
    }
    // skmem:(r0,rb131072,t0,tb2626560,f0,w0,o0,bl0,d0)
    static const std::regex skmem(
        R"(skmem:\(r(\d+),rb\d+,t\d+,tb(\d+),f(\d+),w(\d+),)");
    SocketMemory memory;
    for (auto match = std::sregex_iterator(result.output.begin(), result.output.end(), skmem);
         match != std::sregex_iterator(); ++match) {
        ++memory.sockets;
        memory.receive_queued += std::stoull((*match)[1]);
        memory.largest_send_buffer =
            std::max<std::uint64_t>(memory.largest_send_buffer, std::stoull((*match)[2]));
        // sk_forward_alloc is an int, printed unsigned: a socket that gave back more than it
        // reserved (sockmap's psock accounting does) shows it negative; it holds nothing then.
        const auto reserved = static_cast<std::int64_t>(
            static_cast<std::int32_t>(static_cast<std::uint32_t>(std::stoull((*match)[3]))));
        memory.reserved += static_cast<std::uint64_t>(std::max<std::int64_t>(reserved, 0));
        memory.send_queued += std::stoull((*match)[4]);
    }
    return memory;
}

}  // namespace splicer::test

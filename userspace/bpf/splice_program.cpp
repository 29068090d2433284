#include "splicer/splice_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "splicer/log.h"
#include "splicer/splice.skel.h"

namespace splicer::bpf {
namespace {

std::string errno_text(int error) { return std::strerror(error < 0 ? -error : error); }

int print_libbpf_message(libbpf_print_level level, const char* format, va_list args) {
    if (level == LIBBPF_DEBUG) {
        return 0;
    }
    std::array<char, 1024> text{};
    const int n = std::vsnprintf(text.data(), text.size(), format, args);
    std::string message(text.data());
    while (!message.empty() && message.back() == '\n') {
        message.pop_back();
    }
    log::write(level == LIBBPF_WARN ? log::Level::warning : log::Level::info, "libbpf",
               {{"msg", message}});
    return n;
}

struct SkeletonDeleter {
    void operator()(splice_bpf* skeleton) const { splice_bpf__destroy(skeleton); }
};

}  // namespace

void route_libbpf_messages_to_log() {
    static std::once_flag once;
    std::call_once(once, [] { libbpf_set_print(print_libbpf_message); });
}

// The verdict attached to the sockhash is detached before the skeleton (and with it the
// map and program fds) goes away, so nothing stays attached to a map that lives on in a pin.
struct SpliceProgram::State {
    std::unique_ptr<splice_bpf, SkeletonDeleter> skeleton;
    bool attached = false;

    ~State() {
        if (attached) {
            bpf_prog_detach2(bpf_program__fd(skeleton->progs.splice_verdict),
                             bpf_map__fd(skeleton->maps.sockets), BPF_SK_SKB_STREAM_VERDICT);
        }
    }
};

SpliceProgram::SpliceProgram(std::unique_ptr<State> state) : state_(std::move(state)) {}
SpliceProgram::SpliceProgram(SpliceProgram&&) noexcept = default;
SpliceProgram& SpliceProgram::operator=(SpliceProgram&&) noexcept = default;
SpliceProgram::~SpliceProgram() = default;

Result<SpliceProgram> SpliceProgram::load() {
    route_libbpf_messages_to_log();
    auto state = std::make_unique<State>();
    state->skeleton.reset(splice_bpf__open());
    if (!state->skeleton) {
        return Error{"loading splice.bpf.o: opening skeleton: " + errno_text(errno)};
    }
    if (const int rc = splice_bpf__load(state->skeleton.get()); rc != 0) {
        return Error{"loading splice.bpf.o: loading into the kernel: " + errno_text(rc)};
    }
    const int program_fd = bpf_program__fd(state->skeleton->progs.splice_verdict);
    const int sockets_fd = bpf_map__fd(state->skeleton->maps.sockets);
    if (bpf_prog_attach(program_fd, sockets_fd, BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
        return Error{"loading splice.bpf.o: attaching stream_verdict to the sockhash: " +
                     errno_text(errno)};
    }
    state->attached = true;
    return SpliceProgram(std::move(state));
}

int SpliceProgram::sockets_map_fd() const { return bpf_map__fd(state_->skeleton->maps.sockets); }
int SpliceProgram::peers_map_fd() const { return bpf_map__fd(state_->skeleton->maps.peers); }
int SpliceProgram::counters_map_fd() const {
    return bpf_map__fd(state_->skeleton->maps.counters);
}
int SpliceProgram::verdict_program_fd() const {
    return bpf_program__fd(state_->skeleton->progs.splice_verdict);
}

Result<splicer_cookie> socket_cookie(int fd) {
    splicer_cookie cookie = 0;
    socklen_t length = sizeof(cookie);
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) != 0) {
        return Error{"SO_COOKIE: " + errno_text(errno)};
    }
    return cookie;
}

Result<void> SpliceProgram::pair(int client_fd, int backend_fd) {
    auto client_cookie = socket_cookie(client_fd);
    auto backend_cookie = socket_cookie(backend_fd);
    if (!client_cookie || !backend_cookie) {
        return (client_cookie ? backend_cookie.error() : client_cookie.error());
    }
    // Peers first, so the verdict finds a partner for the very first skb after insertion.
    const splicer_peer client_peer{*backend_cookie, SPLICER_DIR_CLIENT_TO_BACKEND, 0};
    const splicer_peer backend_peer{*client_cookie, SPLICER_DIR_BACKEND_TO_CLIENT, 0};
    if (bpf_map_update_elem(peers_map_fd(), &*client_cookie, &client_peer, BPF_NOEXIST) != 0 ||
        bpf_map_update_elem(peers_map_fd(), &*backend_cookie, &backend_peer, BPF_NOEXIST) != 0) {
        const int error = errno;
        unpair(client_fd, backend_fd);
        return Error{"peer map update: " + errno_text(error)};
    }
    // The sockhash value is the socket fd; the kernel stores the socket, keyed by cookie.
    auto client_value = static_cast<std::uint64_t>(client_fd);
    auto backend_value = static_cast<std::uint64_t>(backend_fd);
    if (bpf_map_update_elem(sockets_map_fd(), &*client_cookie, &client_value, BPF_NOEXIST) != 0 ||
        bpf_map_update_elem(sockets_map_fd(), &*backend_cookie, &backend_value, BPF_NOEXIST) !=
            0) {
        const int error = errno;
        unpair(client_fd, backend_fd);
        return Error{"sockhash insert: " + errno_text(error)};
    }
    return {};
}

void SpliceProgram::unpair(int client_fd, int backend_fd) {
    for (const int fd : {client_fd, backend_fd}) {
        auto cookie = socket_cookie(fd);
        if (!cookie) {
            continue;
        }
        bpf_map_delete_elem(sockets_map_fd(), &*cookie);
        bpf_map_delete_elem(peers_map_fd(), &*cookie);
    }
}

Result<Counters> SpliceProgram::read_counters() const {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) {
        return Error{"counting possible CPUs: " + errno_text(cpus)};
    }
    // A per-CPU lookup fills one value per possible CPU, each padded to 8 bytes.
    std::vector<splicer_counters> per_cpu(static_cast<std::size_t>(cpus));
    const std::uint32_t key = 0;
    if (bpf_map_lookup_elem(counters_map_fd(), &key, per_cpu.data()) != 0) {
        return Error{"reading counters: " + errno_text(errno)};
    }
    Counters sum;
    for (const splicer_counters& cpu : per_cpu) {
        for (std::size_t dir = 0; dir < SPLICER_DIR_COUNT; ++dir) {
            sum.redirected_skbs[dir] += cpu.redirected_skbs[dir];
            sum.redirected_bytes[dir] += cpu.redirected_bytes[dir];
        }
        sum.no_peer += cpu.no_peer;
        sum.redirect_failed += cpu.redirect_failed;
    }
    return sum;
}

}  // namespace splicer::bpf

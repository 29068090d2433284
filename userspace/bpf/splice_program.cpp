#include "splicer/splice_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "splicer/log.h"
#include "splicer/splice.skel.h"

namespace splicer::bpf {
namespace {

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
// Detaching names the program: where another process's verdict replaced ours since (an
// upgrade's new process), the kernel finds ours no longer attached and leaves its alone.
struct SpliceProgram::State {
    std::unique_ptr<splice_bpf, SkeletonDeleter> skeleton;
    bool attached = false;
    bool reused = false;  // load_reusing: the maps are another process's too
    // load_reusing, until took_over: the verdict ours replaced, attached again at
    // destruction (the old process serves on and pairs new sockets under it).
    UniqueFd previous_verdict;
    // Values in a per-CPU lookup of the counters map, known at load: libbpf counts them by
    // opening /sys/devices/system/cpu/possible, and caches the count only once an open
    // succeeded. Asked first at the daemon's first counters publication, that open met the
    // EMFILE of a full fd table (a libbpf warning every second, counters unread) instead.
    int possible_cpus = 0;

    ~State() {
        if (!attached) {
            return;
        }
        const int sockets_fd = bpf_map__fd(skeleton->maps.sockets);
        if (previous_verdict) {
            // Attaching swaps the map's program whatever is attached (sock_map_prog_update).
            // Still root here when the start failed before the privilege drop; after it the
            // kernel may refuse (CAP_NET_ADMIN): said, as the old process then pairs new
            // sockets under our verdict, which uses the same maps (README "Upgrading").
            if (bpf_prog_attach(previous_verdict.get(), sockets_fd, BPF_SK_SKB_STREAM_VERDICT,
                                0) != 0) {
                log::warning("verdict_not_restored", {{"error", errno_text(errno)}});
            }
            return;
        }
        bpf_prog_detach2(bpf_program__fd(skeleton->progs.splice_verdict), sockets_fd,
                         BPF_SK_SKB_STREAM_VERDICT);
    }
};

SpliceProgram::SpliceProgram(std::unique_ptr<State> state) : state_(std::move(state)) {}
SpliceProgram::SpliceProgram(SpliceProgram&&) noexcept = default;
SpliceProgram& SpliceProgram::operator=(SpliceProgram&&) noexcept = default;
SpliceProgram::~SpliceProgram() = default;

namespace {

// The verdict attached to the sockhash `sockets_fd` now, opened (needs CAP_SYS_ADMIN: at
// start-up), or an empty fd when none is attached.
Result<UniqueFd> attached_verdict(int sockets_fd) {
    std::array<__u32, 1> ids{};
    auto count = static_cast<__u32>(ids.size());
    __u32 attach_flags = 0;
    if (bpf_prog_query(sockets_fd, BPF_SK_SKB_STREAM_VERDICT, 0, &attach_flags, ids.data(),
                       &count) != 0) {
        return Error{"asking which verdict is attached to the sockhash: " + errno_text(errno)};
    }
    if (count == 0) {
        return UniqueFd();
    }
    UniqueFd verdict(bpf_prog_get_fd_by_id(ids[0]));
    if (!verdict) {
        return Error{"opening the verdict attached to the sockhash: " + errno_text(errno)};
    }
    return verdict;
}

}  // namespace

Result<SpliceProgram> SpliceProgram::load(const LoadOptions& options) {
    return load_with(options, nullptr);
}

Result<SpliceProgram> SpliceProgram::load_reusing(ReusedMaps maps, const LoadOptions& options) {
    LoadOptions sized = options;
    sized.max_sockets = maps.max_sockets;
    return load_with(sized, &maps);
}

Result<SpliceProgram> SpliceProgram::load_with(const LoadOptions& options, ReusedMaps* reuse) {
    route_libbpf_messages_to_log();
    if (options.flow_limit_bytes == 0 || options.flow_limit_bytes > SPLICER_MAX_FLOW_LIMIT_BYTES) {
        return Error{"loading splice.bpf.o: flow limit " +
                     std::to_string(options.flow_limit_bytes) + " bytes out of range 1.." +
                     std::to_string(SPLICER_MAX_FLOW_LIMIT_BYTES)};
    }
    if (options.max_sockets < SPLICER_MIN_SOCKETS || options.max_sockets > SPLICER_SOCKETS_LIMIT) {
        return Error{"loading splice.bpf.o: " + std::to_string(options.max_sockets) +
                     " sockets out of range " + std::to_string(SPLICER_MIN_SOCKETS) + ".." +
                     std::to_string(SPLICER_SOCKETS_LIMIT)};
    }
    auto state = std::make_unique<State>();
    state->possible_cpus = libbpf_num_possible_cpus();
    if (state->possible_cpus <= 0) {
        return Error{"loading splice.bpf.o: counting possible CPUs: " +
                     errno_text(state->possible_cpus)};
    }
    state->skeleton.reset(splice_bpf__open());
    if (!state->skeleton) {
        return Error{"loading splice.bpf.o: opening skeleton: " + errno_text(errno)};
    }
    // Map sizes are fixed at creation (load): one entry per socket in each of the three.
    for (bpf_map* map : {state->skeleton->maps.sockets, state->skeleton->maps.peers,
                         state->skeleton->maps.copied}) {
        if (const int rc = bpf_map__set_max_entries(map, options.max_sockets); rc != 0) {
            return Error{"loading splice.bpf.o: sizing map " + std::string(bpf_map__name(map)) +
                         ": " + errno_text(rc)};
        }
    }
    if (reuse != nullptr) {
        // libbpf takes each map's definition from the fd (it dups it) and creates none: the
        // shapes were checked against what this build expects (bpf/reused_maps.h).
        const std::pair<bpf_map*, int> maps[] = {
            {state->skeleton->maps.sockets, reuse->sockets.get()},
            {state->skeleton->maps.peers, reuse->peers.get()},
            {state->skeleton->maps.copied, reuse->copied.get()},
            {state->skeleton->maps.counters, reuse->counters.get()}};
        for (const auto& [map, fd] : maps) {
            if (const int rc = bpf_map__reuse_fd(map, fd); rc != 0) {
                return Error{"loading splice.bpf.o: reusing the pinned map " +
                             std::string(bpf_map__name(map)) + ": " + errno_text(rc)};
            }
        }
        state->reused = true;
    }
    // Read-only data is frozen at load: the verdict sees this as a constant.
    state->skeleton->rodata->flow_limit_bytes = options.flow_limit_bytes;
    state->skeleton->rodata->flow_control = options.flow_control ? 1 : 0;
    state->skeleton->rodata->fail_trims = options.fail_trims ? 1 : 0;
    if (const int rc = splice_bpf__load(state->skeleton.get()); rc != 0) {
        return Error{"loading splice.bpf.o: loading into the kernel: " + errno_text(rc)};
    }
    const int program_fd = bpf_program__fd(state->skeleton->progs.splice_verdict);
    const int sockets_fd = bpf_map__fd(state->skeleton->maps.sockets);
    if (state->reused) {
        auto previous = attached_verdict(sockets_fd);
        if (!previous) {
            return previous.error().with_context("loading splice.bpf.o");
        }
        state->previous_verdict = std::move(previous).value();
    }
    // On a reused sockhash this replaces the old process's verdict at once for sockets
    // inserted from now on (see load_reusing); a sockmap takes no BPF_F_REPLACE, and needs
    // none: the swap is one xchg of the map's program pointer.
    if (bpf_prog_attach(program_fd, sockets_fd, BPF_SK_SKB_STREAM_VERDICT, 0) != 0) {
        return Error{"loading splice.bpf.o: attaching stream_verdict to the sockhash: " +
                     errno_text(errno)};
    }
    state->attached = true;
    return SpliceProgram(std::move(state));
}

bool SpliceProgram::reuses_maps() const { return state_->reused; }

void SpliceProgram::took_over() { state_->previous_verdict.reset(); }

void SpliceProgram::attach_own_verdict() {
    // Attaching swaps the map's program whatever is attached (sock_map_prog_update): ours
    // again when it was still ours.
    if (bpf_prog_attach(verdict_program_fd(), sockets_map_fd(), BPF_SK_SKB_STREAM_VERDICT, 0) !=
        0) {
        log::warning("verdict_not_reattached", {{"error", errno_text(errno)}});
        return;
    }
    log::notice("verdict_reattached");
}

int SpliceProgram::sockets_map_fd() const {
    return bpf_map__fd(state_->skeleton->maps.sockets);
}
int SpliceProgram::peers_map_fd() const {
    return bpf_map__fd(state_->skeleton->maps.peers);
}
int SpliceProgram::copied_map_fd() const {
    return bpf_map__fd(state_->skeleton->maps.copied);
}
int SpliceProgram::counters_map_fd() const {
    return bpf_map__fd(state_->skeleton->maps.counters);
}
int SpliceProgram::verdict_program_fd() const {
    return bpf_program__fd(state_->skeleton->progs.splice_verdict);
}
std::uint64_t SpliceProgram::flow_limit_bytes() const {
    return state_->skeleton->rodata->flow_limit_bytes;
}
bool SpliceProgram::flow_control() const {
    return state_->skeleton->rodata->flow_control != 0;
}
std::uint32_t SpliceProgram::max_sockets() const {
    return bpf_map__max_entries(state_->skeleton->maps.sockets);
}

Result<splicer_cookie> socket_cookie(int fd) {
    splicer_cookie cookie = 0;
    socklen_t length = sizeof(cookie);
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) != 0) {
        return Error{"SO_COOKIE: " + errno_text(errno)};
    }
    return cookie;
}

Result<void> SpliceProgram::pair(int client_fd, int backend_fd, PairStage* failed_at) {
    if (failed_at != nullptr) {
        *failed_at = PairStage::linking;
    }
    auto client_cookie = socket_cookie(client_fd);
    auto backend_cookie = socket_cookie(backend_fd);
    if (!client_cookie || !backend_cookie) {
        return (client_cookie ? backend_cookie.error() : client_cookie.error());
    }
    return pair(SocketCookie{client_fd, *client_cookie}, SocketCookie{backend_fd, *backend_cookie},
                failed_at);
}

namespace {

// Options filled by hand: LIBBPF_OPTS is a GNU statement expression -Wpedantic refuses in C++.
bpf_map_batch_opts batch_options() {
    bpf_map_batch_opts options{};
    options.sz = sizeof(options);
    return options;
}

// Writes both keys' values in one bpf() call (BPF_MAP_UPDATE_BATCH, which hash maps take
// and a sockhash does not). The batch takes no BPF_NOEXIST (only BPF_F_LOCK as an element
// flag): the keys are cookies of sockets never paired before, which the kernel never reuses.
Result<void> update_both(int map_fd, const std::array<splicer_cookie, 2>& keys,
                         const void* values, const char* what) {
    auto count = static_cast<__u32>(keys.size());
    const bpf_map_batch_opts options = batch_options();
    if (bpf_map_update_batch(map_fd, keys.data(), values, &count, &options) != 0) {
        return Error{std::string(what) + " update: " + errno_text(errno)};
    }
    return {};
}

// Removes both keys in one bpf() call where both are there (the batch stops at the first
// missing key), else one by one.
void delete_both(int map_fd, const std::array<splicer_cookie, 2>& keys) {
    auto count = static_cast<__u32>(keys.size());
    const bpf_map_batch_opts options = batch_options();
    if (bpf_map_delete_batch(map_fd, keys.data(), &count, &options) == 0) {
        return;
    }
    for (std::size_t i = count; i < keys.size(); ++i) {
        bpf_map_delete_elem(map_fd, &keys[i]);
    }
}

}  // namespace

Result<void> SpliceProgram::pair(SocketCookie client, SocketCookie backend, PairStage* failed_at) {
    PairStage unused{};
    PairStage& stage = failed_at != nullptr ? *failed_at : unused;
    stage = PairStage::linking;
    if (client.cookie == 0 || backend.cookie == 0 || client.cookie == backend.cookie) {
        return Error{"pairing: not two sockets' cookies"};
    }
    // Links and copied counts first, so the verdict finds a partner and a zero copy count for
    // the very first skb after insertion.
    const std::array<splicer_cookie, 2> keys{client.cookie, backend.cookie};
    const std::array<splicer_link, 2> links{
        splicer_link{.peer_cookie = backend.cookie, .direction = SPLICER_DIR_CLIENT_TO_BACKEND},
        splicer_link{.peer_cookie = client.cookie, .direction = SPLICER_DIR_BACKEND_TO_CLIENT}};
    const std::array<splicer_copied, 2> zeros{};
    for (const auto& [fd, values, what] :
         {std::tuple{peers_map_fd(), static_cast<const void*>(links.data()), "peer map"},
          std::tuple{copied_map_fd(), static_cast<const void*>(zeros.data()), "copied map"}}) {
        if (auto updated = update_both(fd, keys, values, what); !updated) {
            unpair_cookies(client.cookie, backend.cookie);
            return updated.error();
        }
    }
    // The sockhash value is the socket fd; the kernel stores the socket, keyed by cookie.
    auto client_value = static_cast<std::uint64_t>(client.fd);
    auto backend_value = static_cast<std::uint64_t>(backend.fd);
    stage = PairStage::client_insert;
    if (bpf_map_update_elem(sockets_map_fd(), &client.cookie, &client_value, BPF_NOEXIST) != 0) {
        const int error = errno;
        unpair_cookies(client.cookie, backend.cookie);
        return Error{"sockhash insert (client): " + errno_text(error)};
    }
    stage = PairStage::backend_insert;
    if (bpf_map_update_elem(sockets_map_fd(), &backend.cookie, &backend_value, BPF_NOEXIST) != 0) {
        const int error = errno;
        unpair_cookies(client.cookie, backend.cookie);
        return Error{"sockhash insert (backend): " + errno_text(error)};
    }
    return {};
}

void SpliceProgram::unpair(int client_fd, int backend_fd) {
    auto client_cookie = socket_cookie(client_fd);
    auto backend_cookie = socket_cookie(backend_fd);
    unpair_cookies(client_cookie ? *client_cookie : 0, backend_cookie ? *backend_cookie : 0);
}

void SpliceProgram::unpair_cookies(splicer_cookie client, splicer_cookie backend) {
    for (const splicer_cookie cookie : {client, backend}) {
        // Cookie 0 is never a socket's; it stands for "unknown" here.
        if (cookie == 0) {
            continue;
        }
        // Sockhash first: once out of it, no new verdict starts for the socket.
        bpf_map_delete_elem(sockets_map_fd(), &cookie);
        bpf_map_delete_elem(peers_map_fd(), &cookie);
        bpf_map_delete_elem(copied_map_fd(), &cookie);
    }
}

std::array<std::uint64_t, 2> SpliceProgram::unpair_closed(splicer_cookie client,
                                                          splicer_cookie backend) {
    std::array<std::uint64_t, 2> redirected{};
    const std::array<splicer_cookie, 2> keys{client, backend};
    for (std::size_t i = 0; i < keys.size(); ++i) {
        splicer_link link{};
        // One call reads the final link and removes it: no verdict runs on a closed socket.
        if (keys[i] != 0 &&
            bpf_map_lookup_and_delete_elem(peers_map_fd(), &keys[i], &link) == 0) {
            redirected[i] = link.redirected;
        }
    }
    if (client != 0 && backend != 0) {
        delete_both(copied_map_fd(), keys);
    } else {
        for (const splicer_cookie cookie : keys) {
            if (cookie != 0) {
                bpf_map_delete_elem(copied_map_fd(), &cookie);
            }
        }
    }
    return redirected;
}

Result<LinkState> SpliceProgram::link_state(splicer_cookie cookie) const {
    splicer_copied copied_entry{};
    if (bpf_map_lookup_elem_flags(copied_map_fd(), &cookie, &copied_entry, BPF_F_LOCK) != 0) {
        return Error{"copied map lookup: " + errno_text(errno)};
    }
    return link_state(cookie, copied_entry.bytes);
}

Result<LinkState> SpliceProgram::link_state(splicer_cookie cookie, std::uint64_t copied) const {
    splicer_link link{};
    if (bpf_map_lookup_elem(peers_map_fd(), &cookie, &link) != 0) {
        return Error{"peer map lookup: " + errno_text(errno)};
    }
    // The lookup copies the value field by field while the verdict may be updating it, so
    // `redirected` can be older than `passed`. Once passing has begun the verdict redirects
    // nothing until userspace copies, so a second read returns the final `redirected`: the
    // verdict adds to it before it adds to `passed` (atomic adds, ordered).
    if (link.passed > copied && bpf_map_lookup_elem(peers_map_fd(), &cookie, &link) != 0) {
        return Error{"peer map lookup: " + errno_text(errno)};
    }
    return LinkState{.peer_cookie = link.peer_cookie,
                     .direction = link.direction,
                     .redirected = link.redirected,
                     .passed = link.passed,
                     .copied = copied,
                     .peer_baseline_set = (link.flags & SPLICER_LINK_BASELINE_SET) != 0,
                     .peer_write_seq_base = link.peer_write_seq_base,
                     .abort = (link.flags & SPLICER_LINK_ABORT) != 0,
                     .urgent_at = link.urgent_at,
                     .urgent_dropped = link.urgent_dropped};
}

Result<void> SpliceProgram::set_copied(splicer_cookie cookie, std::uint64_t value,
                                       std::uint32_t removed) {
    // BPF_F_LOCK: in place, under the value's lock (see struct splicer_copied). BPF_EXIST:
    // only sockets pair() created an entry for; never resurrects an unpaired one.
    const splicer_copied entry{.removed = removed, .bytes = value};
    if (bpf_map_update_elem(copied_map_fd(), &cookie, &entry, BPF_EXIST | BPF_F_LOCK) != 0) {
        return Error{"copied map update: " + errno_text(errno)};
    }
    return {};
}

namespace {

// Sums the per-CPU values of a counters map holding `cpus` of them.
Result<Counters> sum_counters(int counters_map_fd, int cpus) {
    // A per-CPU lookup fills one value per possible CPU, each padded to 8 bytes.
    std::vector<splicer_counters> per_cpu(static_cast<std::size_t>(cpus));
    const std::uint32_t key = 0;
    if (bpf_map_lookup_elem(counters_map_fd, &key, per_cpu.data()) != 0) {
        return Error{"reading counters: " + errno_text(errno)};
    }
    Counters sum;
    for (const splicer_counters& cpu : per_cpu) {
        for (std::size_t dir = 0; dir < SPLICER_DIR_COUNT; ++dir) {
            const splicer_flow_counters& flow = cpu.flow[dir];
            sum.redirected_skbs[dir] += flow.redirected_skbs;
            sum.redirected_bytes[dir] += flow.redirected_bytes;
            sum.passed_skbs[dir] += flow.passed_skbs;
            sum.passed_bytes[dir] += flow.passed_bytes;
            sum.limit_trips[dir] += flow.limit_trips;
            sum.room_trips[dir] += flow.room_trips;
            sum.peer_missing[dir] += flow.peer_missing;
            sum.redirect_failed[dir] += flow.redirect_failed;
            sum.bare_fins[dir] += flow.bare_fins;
            sum.overlap_skbs[dir] += flow.overlap_skbs;
            sum.overlap_bytes[dir] += flow.overlap_bytes;
            sum.overlap_failed[dir] += flow.overlap_failed;
            sum.urgent_bytes[dir] += flow.urgent_bytes;
            sum.urgent_passed[dir] += flow.urgent_passed;
            sum.edit_failed[dir] += flow.edit_failed;
        }
        sum.no_peer += cpu.no_peer;
    }
    return sum;
}

}  // namespace

Result<void> SpliceProgram::clear() {
    if (state_->reused) {
        // The old process's pairs are in these maps: emptying them would end every one.
        return Error{"clearing maps reused from a running splicer: refused"};
    }
    // Keys are cookies in all three maps. Deleting the key just read would make the next
    // get_next_key start over from the first key: always ask for the first one instead.
    for (const auto& [fd, name] :
         {std::pair{sockets_map_fd(), "sockhash"}, std::pair{peers_map_fd(), "peer map"},
          std::pair{copied_map_fd(), "copied map"}}) {
        splicer_cookie key = 0;
        // Bounded: a map holds at most max_sockets() keys.
        for (std::uint32_t round = 0;
             round <= max_sockets() && bpf_map_get_next_key(fd, nullptr, &key) == 0; ++round) {
            if (bpf_map_delete_elem(fd, &key) != 0 && errno != ENOENT) {
                return Error{std::string("clearing the ") + name + ": " + errno_text(errno)};
            }
        }
    }
    // One zeroed value per possible CPU: the per-CPU array has a single entry (key 0).
    const std::vector<splicer_counters> zero(static_cast<std::size_t>(state_->possible_cpus));
    const std::uint32_t key = 0;
    if (bpf_map_update_elem(counters_map_fd(), &key, zero.data(), BPF_ANY) != 0) {
        return Error{"zeroing the counters: " + errno_text(errno)};
    }
    return {};
}

// Opens no file: the daemon calls this once a second, whatever its fd table holds.
Result<Counters> SpliceProgram::read_counters() const {
    return sum_counters(counters_map_fd(), state_->possible_cpus);
}

Result<Counters> read_counters(int counters_map_fd) {
    const int cpus = libbpf_num_possible_cpus();
    if (cpus <= 0) {
        return Error{"counting possible CPUs: " + errno_text(cpus)};
    }
    return sum_counters(counters_map_fd, cpus);
}

}  // namespace splicer::bpf

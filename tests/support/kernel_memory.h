#pragma once
// Kernel memory of the whole machine that idle connections cost: slab caches (socket
// structs, dentries and inodes of socket files, epoll and io_uring entries, BPF map
// elements) from /proc/slabinfo, and TCP's own buffer accounting from /proc/net/sockstat.
// Machine-wide by nature: a test that reads them must run alone (the `serial` tag) and
// still allow for the kernel's own background churn.

#include <cstdint>
#include <map>
#include <string>

namespace splicer::test {

struct KernelMemory {
    // Every slab cache's pages (num_slabs x pagesperslab), in bytes, by cache name.
    std::map<std::string, std::uint64_t> slab_caches;
    std::uint64_t slab = 0;  // their sum
    // /proc/net/sockstat "TCP: ... mem N": pages charged to tcp_mem by every TCP socket of
    // the machine (all network namespaces), in bytes.
    std::uint64_t tcp = 0;
};

// Throws when /proc/slabinfo (root only) or /proc/net/sockstat cannot be read or parsed.
KernelMemory kernel_memory();

// The `count` caches that grew most from `before` to `after`, as "name +N KiB, ...".
std::string largest_slab_growth(const KernelMemory& before, const KernelMemory& after,
                                std::size_t count);

}  // namespace splicer::test

#pragma once
// File systems a test mounts for itself, unmounted (lazily) and removed on destruction: a bpffs
// of its own, mounted without `mode=` as an administrator's plain `mount -t bpf` would be
// (drwxrwxrwt: any local user may create entries in it), and a tmpfs over a directory. Tests
// of hostile pin dirs use these, never the real /sys/fs/bpf/splicer.

#include <string>

namespace splicer::test {

// A mount of `fstype` on an existing directory `target`; umount2(MNT_DETACH) when destroyed.
class ScopedMount {
public:
    ScopedMount(const std::string& fstype, std::string target, const std::string& data = "");
    ~ScopedMount();
    ScopedMount(const ScopedMount&) = delete;
    ScopedMount& operator=(const ScopedMount&) = delete;

    [[nodiscard]] const std::string& path() const { return target_; }

private:
    std::string target_;
};

// A fresh bpffs on a new directory under /tmp (removed after the unmount).
class BpffsMount {
public:
    BpffsMount();
    ~BpffsMount();
    BpffsMount(const BpffsMount&) = delete;
    BpffsMount& operator=(const BpffsMount&) = delete;

    [[nodiscard]] const std::string& path() const { return path_; }

private:
    static std::string make_dir();
    std::string path_;
    ScopedMount mount_;
};

}  // namespace splicer::test

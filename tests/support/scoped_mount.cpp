#include "support/scoped_mount.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace splicer::test {

ScopedMount::ScopedMount(const std::string& fstype, std::string target, const std::string& data)
    : target_(std::move(target)) {
    if (::mount(fstype.c_str(), target_.c_str(), fstype.c_str(), 0,
                data.empty() ? nullptr : data.c_str()) != 0) {
        throw std::runtime_error("mounting " + fstype + " on " + target_ + ": " +
                                 std::strerror(errno));
    }
}

ScopedMount::~ScopedMount() {
    ::umount2(target_.c_str(), MNT_DETACH);
}

std::string BpffsMount::make_dir() {
    std::string pattern = "/tmp/splicer-test-bpffs-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
    }
    return pattern;
}

BpffsMount::BpffsMount() : path_(make_dir()), mount_("bpf", path_) {}

BpffsMount::~BpffsMount() {
    // Members are destroyed after this body: unmount first, then remove the directory.
    ::umount2(path_.c_str(), MNT_DETACH);
    ::rmdir(path_.c_str());
}

}  // namespace splicer::test

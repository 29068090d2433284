#include "support/file_modes.h"

namespace splicer::test {

namespace fs = std::filesystem;

namespace {

constexpr fs::perms kOwnerReadWrite = fs::perms::owner_read | fs::perms::owner_write;
constexpr fs::perms kAllRead = fs::perms::group_read | fs::perms::others_read;
constexpr fs::perms kAllExec = fs::perms::group_exec | fs::perms::others_exec;

}  // namespace

void make_root_only(const fs::path& path) {
    if (!fs::is_directory(path)) {
        fs::permissions(path, kOwnerReadWrite);
        return;
    }
    fs::permissions(path, fs::perms::owner_all);
    for (const fs::directory_entry& entry : fs::directory_iterator(path)) {
        if (entry.is_regular_file()) {
            fs::permissions(entry.path(), kOwnerReadWrite);
        }
    }
}

void make_readable_by_all(const fs::path& file) {
    fs::permissions(file.parent_path(), fs::perms::owner_all | kAllRead | kAllExec);
    fs::permissions(file, kOwnerReadWrite | kAllRead);
}

}  // namespace splicer::test

#pragma once
// Who may read a file the daemon reads after its privilege drop. Root only, as
// /etc/splicer/splicer.conf and Let's Encrypt's live/ are: the dropped daemon reaches them
// through its privileged helper alone. Readable by all: the dropped daemon rereads the file
// itself (a test about reloading, not about privileges).

#include <filesystem>

namespace splicer::test {

// A file: mode 0600. A directory: 0700, and 0600 for each regular file directly in it.
// Ownership is left as it is (root's, for a file a root test made).
void make_root_only(const std::filesystem::path& path);

// `file` mode 0644 and the directory holding it 0755.
void make_readable_by_all(const std::filesystem::path& file);

}  // namespace splicer::test

#pragma once
// What the privileged helper hands the worker on a reload: the files the configuration names,
// each as {path, bytes} or {path, errno} (privsep/helper.h). The worker reads its files from
// a bundle instead of the disk, so a root-only config (mode 0600) or a certificate in a
// root-only directory (Let's Encrypt's live/ is 0700) can be reread after the privilege drop.
// A bundle is a list: files named by a new kind of setting ride along with no protocol change.
//
// Pure: encode/decode do no I/O; decode checks every length against the limits below, so a
// short or lying message is an error, never an overread.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "splicer/result.h"

namespace splicer::privsep {

// A file's outcome: read whole (error 0), or the errno that stopped it.
struct FileRead {
    int error = 0;
    std::string bytes;
};

struct BundleFile {
    std::string path;
    FileRead read;
};

struct FileBundle {
    std::vector<BundleFile> files;
};

// Bounds, checked on both sides. A config file is refused above 16 MiB by its loader anyway;
// certificates, keys and OCSP responses are kilobytes.
inline constexpr std::size_t kMaxFiles = 64;
inline constexpr std::size_t kMaxPathBytes = 4096;
inline constexpr std::size_t kMaxFileBytes = std::size_t{16} << 20;
inline constexpr std::size_t kMaxBundleBytes = std::size_t{64} << 20;

// Reads `path` whole from the disk, as the calling process may: EFBIG above kMaxFileBytes.
FileRead read_file_now(const std::filesystem::path& path);

// Reads each path once (a path named twice appears once), in order.
FileBundle read_bundle(const std::vector<std::filesystem::path>& paths);

std::string encode(const FileBundle& bundle);
Result<FileBundle> decode(std::span<const std::byte> bytes);

// A file's bytes, from the disk (read_file_now) or from a bundle: a path not in the bundle is
// EACCES, as the helper reads only what the configuration named.
using FileSource = std::function<FileRead(const std::filesystem::path&)>;
FileSource disk_source();
FileSource bundle_source(FileBundle bundle);

// The same as a Result (the error says which file and why): the reader seam TLS loading
// takes, `std::function<Result<std::string>(const std::filesystem::path&)>`.
using FileReader = std::function<Result<std::string>(const std::filesystem::path&)>;
FileReader as_reader(FileSource source);

}  // namespace splicer::privsep

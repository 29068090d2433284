#include "privsep/file_bundle.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <utility>

#include "splicer/unique_fd.h"

namespace splicer::privsep {
namespace {

constexpr std::uint32_t kMagic = 0x31425053;  // "SPB1": a bundle, version 1

void put_u32(std::string& out, std::uint32_t value) {
    char bytes[sizeof value];
    std::memcpy(bytes, &value, sizeof value);
    out.append(bytes, sizeof value);
}

// Reads through `bytes`, every length checked before it is used.
class Reader {
public:
    explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}

    bool u32(std::uint32_t& value) {
        if (bytes_.size() - at_ < sizeof value) {
            return false;
        }
        std::memcpy(&value, bytes_.data() + at_, sizeof value);
        at_ += sizeof value;
        return true;
    }
    bool text(std::size_t length, std::string& out) {
        if (bytes_.size() - at_ < length) {
            return false;
        }
        out.assign(reinterpret_cast<const char*>(bytes_.data() + at_), length);
        at_ += length;
        return true;
    }
    [[nodiscard]] bool done() const { return at_ == bytes_.size(); }

private:
    std::span<const std::byte> bytes_;
    std::size_t at_ = 0;
};

}  // namespace

FileRead read_file_now(const std::filesystem::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) {
        return {errno, {}};
    }
    FileRead read;
    char buffer[65536];
    while (true) {
        const ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            return {errno, {}};  // EISDIR for a directory, EIO, ...
        }
        if (got == 0) {
            return read;
        }
        read.bytes.append(buffer, static_cast<std::size_t>(got));
        if (read.bytes.size() > kMaxFileBytes) {
            return {EFBIG, {}};
        }
    }
}

FileBundle read_bundle(const std::vector<std::filesystem::path>& paths) {
    FileBundle bundle;
    for (const std::filesystem::path& path : paths) {
        const bool seen = std::any_of(bundle.files.begin(), bundle.files.end(),
                                      [&](const BundleFile& file) { return file.path == path; });
        if (seen || bundle.files.size() == kMaxFiles) {
            continue;
        }
        if (path.native().size() > kMaxPathBytes) {
            bundle.files.push_back({path.native(), {ENAMETOOLONG, {}}});
            continue;
        }
        bundle.files.push_back({path.native(), read_file_now(path)});
    }
    return bundle;
}

std::string encode(const FileBundle& bundle) {
    std::string out;
    put_u32(out, kMagic);
    put_u32(out, static_cast<std::uint32_t>(bundle.files.size()));
    for (const BundleFile& file : bundle.files) {
        put_u32(out, static_cast<std::uint32_t>(file.path.size()));
        out += file.path;
        put_u32(out, static_cast<std::uint32_t>(file.read.error));
        put_u32(out, static_cast<std::uint32_t>(file.read.bytes.size()));
        out += file.read.bytes;
    }
    return out;
}

Result<FileBundle> decode(std::span<const std::byte> bytes) {
    if (bytes.size() > kMaxBundleBytes) {
        return Error{"file bundle: larger than the limit"};
    }
    Reader reader(bytes);
    std::uint32_t magic = 0;
    std::uint32_t count = 0;
    if (!reader.u32(magic) || magic != kMagic) {
        return Error{"file bundle: not a bundle"};
    }
    if (!reader.u32(count) || count > kMaxFiles) {
        return Error{"file bundle: bad file count"};
    }
    FileBundle bundle;
    for (std::uint32_t i = 0; i < count; ++i) {
        BundleFile file;
        std::uint32_t path_length = 0;
        std::uint32_t error = 0;
        std::uint32_t size = 0;
        if (!reader.u32(path_length) || path_length > kMaxPathBytes ||
            !reader.text(path_length, file.path) || !reader.u32(error) || !reader.u32(size) ||
            size > kMaxFileBytes || !reader.text(size, file.read.bytes)) {
            return Error{"file bundle: file " + std::to_string(i) + " is cut short or too large"};
        }
        file.read.error = static_cast<int>(error);
        bundle.files.push_back(std::move(file));
    }
    if (!reader.done()) {
        return Error{"file bundle: bytes after the last file"};
    }
    return bundle;
}

FileSource disk_source() {
    return read_file_now;
}

FileSource bundle_source(FileBundle bundle) {
    auto shared = std::make_shared<const FileBundle>(std::move(bundle));
    return [shared](const std::filesystem::path& path) -> FileRead {
        for (const BundleFile& file : shared->files) {
            if (file.path == path.native()) {
                return file.read;
            }
        }
        return {EACCES, {}};
    };
}

FileReader as_reader(FileSource source) {
    return [source = std::move(source)](const std::filesystem::path& path) -> Result<std::string> {
        FileRead read = source(path);
        if (read.error != 0) {
            return errno_error(path.native(), read.error);
        }
        return std::move(read.bytes);
    };
}

}  // namespace splicer::privsep

// The privileged helper's answer (privsep/file_bundle.h, privsep/channel.h): a bundle of
// {path, bytes or errno} survives the trip over a real SOCK_SEQPACKET socketpair in 64 KiB
// records, and decode refuses every cut or lying length instead of reading past the end.

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "privsep/channel.h"
#include "privsep/file_bundle.h"
#include "privsep/helper.h"
#include "splicer/unique_fd.h"
#include "support/client_hello.h"

using namespace splicer::privsep;
using splicer::UniqueFd;

namespace {

FileBundle sample() {
    FileBundle bundle;
    bundle.files.push_back({"/etc/splicer/splicer.conf", {0, "listen: ();\n"}});
    bundle.files.push_back({"/etc/letsencrypt/live/x/privkey.pem", {EACCES, {}}});
    bundle.files.push_back({"/big", {0, std::string(300 * 1024, 'k')}});
    return bundle;
}

}  // namespace

TEST_CASE("privsep: a file bundle decodes to what was encoded", "[privsep]") {
    const FileBundle bundle = sample();
    const std::string encoded = encode(bundle);
    auto decoded = decode(splicer::test::as_bytes(encoded));
    REQUIRE(decoded.has_value());
    REQUIRE(decoded->files.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(decoded->files[i].path == bundle.files[i].path);
        CHECK(decoded->files[i].read.error == bundle.files[i].read.error);
        CHECK(decoded->files[i].read.bytes == bundle.files[i].read.bytes);
    }
}

TEST_CASE("privsep: every cut of a file bundle and every lying length is refused", "[privsep]") {
    FileBundle bundle;
    bundle.files.push_back({"/a", {0, "abc"}});
    bundle.files.push_back({"/b", {ENOENT, {}}});
    const std::string encoded = encode(bundle);
    for (std::size_t cut = 0; cut < encoded.size(); ++cut) {
        CAPTURE(cut);
        CHECK_FALSE(decode(splicer::test::as_bytes(encoded.substr(0, cut))).has_value());
    }
    CHECK_FALSE(decode(splicer::test::as_bytes(encoded + "x")).has_value());
    // A file length of 4 GiB - 1 with three bytes behind it.
    std::string lying = encoded;
    const std::uint32_t huge = 0xffffffff;
    std::memcpy(lying.data() + 4 + 4 + 4 + 2 + 4, &huge, sizeof huge);
    CHECK_FALSE(decode(splicer::test::as_bytes(lying)).has_value());
    // More files than the limit.
    std::string many = encoded;
    const auto count = static_cast<std::uint32_t>(kMaxFiles + 1);
    std::memcpy(many.data() + 4, &count, sizeof count);
    CHECK_FALSE(decode(splicer::test::as_bytes(many)).has_value());
}

TEST_CASE("privsep: a bundle source answers only for the paths it holds", "[privsep]") {
    const FileSource source = bundle_source(sample());
    CHECK(source("/etc/splicer/splicer.conf").bytes == "listen: ();\n");
    CHECK(source("/etc/letsencrypt/live/x/privkey.pem").error == EACCES);
    CHECK(source("/etc/shadow").error == EACCES);
    const FileReader reader = as_reader(source);
    CHECK(reader("/etc/splicer/splicer.conf").has_value());
    auto refused = reader("/etc/shadow");
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().message.find("/etc/shadow") != std::string::npos);
}

TEST_CASE("privsep: a 300 KiB bundle crosses a seqpacket socketpair, a longer one is refused",
          "[privsep]") {
    int ends[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0);
    UniqueFd one(ends[0]);
    UniqueFd two(ends[1]);
    REQUIRE(set_timeouts(one.get(), 5, 5).has_value());
    REQUIRE(set_timeouts(two.get(), 5, 5).has_value());
    const std::string message = encode(sample());
    REQUIRE(message.size() > 4 * kRecordBytes);
    // The receiver reads while the sender sends: the records do not all fit in the socket.
    std::thread sender([&] { CHECK(send_message(one.get(), message).has_value()); });
    auto received = receive_message(two.get(), kMaxBundleBytes);
    sender.join();
    REQUIRE(received.has_value());
    CHECK(*received == message);

    std::thread again([&] { CHECK(send_message(one.get(), message).has_value()); });
    auto refused = receive_message(two.get(), message.size() - 1);
    CHECK_FALSE(refused.has_value());
    // The rest of the refused message is still queued: the sender finishes once it is read.
    const std::size_t records =
        1 + (message.size() - (kRecordBytes - 8) + kRecordBytes - 1) / kRecordBytes;
    char drop[1];
    for (std::size_t i = 1; i < records; ++i) {
        CHECK(::recv(two.get(), drop, sizeof drop, MSG_TRUNC) > 0);
    }
    again.join();
}

TEST_CASE("privsep: the helper reads the config file it was given, and no other", "[privsep]") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("privsep-unit-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::filesystem::path config = dir / "splicer.conf";
    std::ofstream(config) << "timeout: 3;\n";
    const FileBundle bundle = read_config_files(config);
    REQUIRE(bundle.files.size() == 1);
    CHECK(bundle.files[0].path == config.native());
    CHECK(bundle.files[0].read.bytes == "timeout: 3;\n");
    const FileBundle missing = read_config_files(dir / "absent.conf");
    REQUIRE(missing.files.size() == 1);
    CHECK(missing.files[0].read.error == ENOENT);
    std::filesystem::remove_all(dir);
}

TEST_CASE("privsep: the helper ignores a request naming a path and answers only with its config",
          "[privsep]") {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("privsep-helper-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::filesystem::path config = dir / "splicer.conf";
    std::ofstream(config) << "timeout: 3;\n";
    int ends[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0);
    UniqueFd worker(ends[0]);
    UniqueFd helper_end(ends[1]);
    const pid_t helper = ::fork();
    REQUIRE(helper >= 0);
    if (helper == 0) {
        run_helper(helper_end.get(), config);
    }
    helper_end.reset();
    REQUIRE(set_timeouts(worker.get(), 5, 1).has_value());
    // A hostile worker names a file, and sends an empty record: neither is answered.
    const std::string hostile = "F/etc/shadow";
    REQUIRE(::send(worker.get(), hostile.data(), hostile.size(), 0) ==
            static_cast<ssize_t>(hostile.size()));
    REQUIRE(::send(worker.get(), "", 0, 0) == 0);
    char byte = 0;
    ssize_t got = 0;
    do {
        // EINTR: io_uring task work for this thread (an earlier test's ring, torn down
        // asynchronously, when the whole binary runs in one process) ends a receive that has
        // a timeout early (sock_intr_errno), as a signal would.
        got = ::recv(worker.get(), &byte, 1, 0);
    } while (got < 0 && errno == EINTR);
    CHECK(got < 0);  // the 1 s receive timeout, no answer
    CHECK((errno == EAGAIN || errno == EWOULDBLOCK));
    // The one request: the config, and nothing else.
    REQUIRE(::send(worker.get(), &kRequestFiles, 1, 0) == 1);
    auto message = receive_message(worker.get(), kMaxBundleBytes);
    REQUIRE(message.has_value());
    auto bundle = decode(std::as_bytes(std::span(message->data(), message->size())));
    REQUIRE(bundle.has_value());
    REQUIRE(bundle->files.size() == 1);
    CHECK(bundle->files[0].path == config.native());
    CHECK(bundle->files[0].read.bytes == "timeout: 3;\n");
    // The worker's end closes: the helper exits at once, status 0.
    worker.reset();
    int status = -1;
    REQUIRE(::waitpid(helper, &status, 0) == helper);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    std::filesystem::remove_all(dir);
}

#include "support/openssl_client.h"

#include <fcntl.h>

#include "splicer/unique_fd.h"
#include "support/process.h"
#include "support/sockets.h"

namespace splicer::test {
namespace {

// The value after `key` up to the end of its line ("" when absent).
std::string value_after(const std::string& text, const std::string& key) {
    const std::size_t found = text.find(key);
    if (found == std::string::npos) {
        return "";
    }
    const std::size_t start = found + key.size();
    const std::size_t end = text.find('\n', start);
    std::string value =
        text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!value.empty() && (value.back() == '\r' || value.back() == ' ')) {
        value.pop_back();
    }
    return value;
}

// OpenSSL 3 prints "subject=CN = name" (older: "subject=/CN=name"); take the CN either way.
std::string common_name(const std::string& output) {
    const std::string subject = value_after(output, "subject=");
    std::size_t cn = subject.find("CN = ");
    std::size_t skip = 5;
    if (cn == std::string::npos) {
        cn = subject.find("CN=");
        skip = 3;
    }
    if (cn == std::string::npos) {
        return "";
    }
    const std::string rest = subject.substr(cn + skip);
    const std::size_t end = rest.find_first_of(",/");
    return rest.substr(0, end);
}

}  // namespace

void add_alpn_option(std::vector<std::string>& argv, const std::vector<std::string>& protocols) {
    if (protocols.empty()) {
        return;
    }
    std::string list;
    for (const std::string& protocol : protocols) {
        list += (list.empty() ? "" : ",") + protocol;
    }
    argv.insert(argv.end(), {"-alpn", list});
}

SClientResult run_s_client(const SClientOptions& options) {
    TempDir dir("splicer-s_client");
    const auto input_path = dir.write_file("input", options.input);
    const auto output_path = dir.path() / "output";
    std::vector<std::string> argv = {"openssl", "s_client", "-connect",
                                     loopback_text(options.port, options.ipv6),
                                     // Wait for the server to close rather than quitting at the
                                     // end of stdin, so its whole answer is printed.
                                     "-ign_eof"};
    if (options.servername.empty()) {
        argv.push_back("-noservername");
    } else {
        argv.insert(argv.end(), {"-servername", options.servername});
    }
    add_alpn_option(argv, options.alpn);
    argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
    const UniqueFd input(::open(input_path.c_str(), O_RDONLY | O_CLOEXEC));
    const UniqueFd output(
        ::open(output_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    SpawnOptions spawn;
    spawn.argv = argv;
    spawn.stdin_fd = input.get();
    spawn.stdout_fd = output.get();
    spawn.stderr_fd = output.get();
    ChildProcess process(spawn);

    SClientResult result;
    if (auto status = process.wait_for_exit(options.timeout)) {
        result.exit_code = *status;
    } else {
        result.timed_out = true;
        result.exit_code = process.terminate(std::chrono::milliseconds(1000));
    }
    result.output = read_file(output_path);
    result.subject_cn = common_name(result.output);
    result.alpn = value_after(result.output, "ALPN protocol: ");
    result.handshake_done = result.output.find("SSL handshake has read") != std::string::npos &&
                            result.output.find("Cipher is (NONE)") == std::string::npos;
    for (const char* kind : {"New", "Reused"}) {
        const std::string line = value_after(result.output, std::string("\n") + kind + ", ");
        if (!line.empty() && !line.starts_with("(NONE)")) {
            result.session = kind;
            result.protocol = line.substr(0, line.find(','));
            break;
        }
    }
    // That line names the cipher's version ("TLSv1.0" for a TLS 1.1 session's CBC cipher);
    // the session block says which protocol was negotiated.
    if (const std::string negotiated = value_after(result.output, "Protocol  : ");
        !result.session.empty() && !negotiated.empty()) {
        result.protocol = negotiated;
    }
    const std::size_t begin = result.output.find("-----BEGIN CERTIFICATE-----");
    const std::string end_marker = "-----END CERTIFICATE-----";
    const std::size_t end = result.output.find(end_marker, begin);
    if (begin != std::string::npos && end != std::string::npos) {
        result.peer_certificate_pem = result.output.substr(begin, end + end_marker.size() - begin);
    }
    return result;
}

}  // namespace splicer::test

// sslscan (Debian's package) against the terminating listener: only TLS 1.2 and 1.3, no
// cipher under 128 bits, none of the broken families (issue 14, "What it must show"). The
// same scan of an openssl s_server made weak on purpose shows that the parsing below sees
// what it refuses, so the check on splicer can fail.

#include <map>
#include <set>

#include "support/backends.h"
#include "tls_termination_common.h"

using namespace splicer::test;

namespace {

// The value of `name="..."` in one XML element's text ("" when absent). sslscan writes one
// element per line with plain attribute values (names, numbers, versions).
std::string attribute(const std::string& element, const std::string& name) {
    const std::string key = " " + name + "=\"";
    const std::size_t start = element.find(key);
    if (start == std::string::npos) {
        return "";
    }
    const std::size_t value = start + key.size();
    const std::size_t end = element.find('"', value);
    return end == std::string::npos ? "" : element.substr(value, end - value);
}

struct AcceptedCipher {
    std::string version;  // "TLSv1.2"
    std::string name;     // OpenSSL's name, "ECDHE-ECDSA-AES128-GCM-SHA256"
    int bits = 0;
    std::string strength;  // sslscan's verdict: strong, acceptable, weak, null, anonymous, ...
};

struct ScanResult {
    bool complete = false;          // the XML document ended
    std::set<std::string> enabled;  // "tls1.2", "ssl3", ...
    std::set<std::string> disabled;
    std::vector<AcceptedCipher> ciphers;
    std::string output;
};

ScanResult sslscan(std::uint16_t port, const std::string& sni_name) {
    ScanResult scan;
    scan.output = run_command("timeout 120 sslscan --no-colour --xml=- --sni-name=" + sni_name +
                              " 127.0.0.1:" + std::to_string(port))
                      .output;
    scan.complete = scan.output.find("</document>") != std::string::npos;
    std::istringstream lines(scan.output);
    for (std::string line; std::getline(lines, line);) {
        if (line.find("<protocol ") != std::string::npos) {
            const std::string protocol = attribute(line, "type") + attribute(line, "version");
            (attribute(line, "enabled") == "1" ? scan.enabled : scan.disabled).insert(protocol);
        } else if (line.find("<cipher ") != std::string::npos) {
            const std::string bits = attribute(line, "bits");
            scan.ciphers.push_back({.version = attribute(line, "sslversion"),
                                    .name = attribute(line, "cipher"),
                                    .bits = bits.empty() ? -1 : std::stoi(bits),
                                    .strength = attribute(line, "strength")});
        }
    }
    return scan;
}

// Why a cipher is weak ("" when it is not): under 128 bits, a broken family in its name, or
// sslscan's own verdict.
std::string weakness(const AcceptedCipher& cipher) {
    if (cipher.bits < 128) {
        return "under 128 bits";
    }
    for (const char* family : {"NULL", "EXP", "RC4", "DES", "MD5", "ADH", "AECDH", "anon"}) {
        if (cipher.name.find(family) != std::string::npos) {
            return std::string("a ") + family + " cipher";
        }
    }
    if (cipher.strength != "strong" && cipher.strength != "acceptable") {
        return "sslscan says " + cipher.strength;
    }
    return "";
}

}  // namespace

TEST_CASE("tls termination: sslscan finds only TLS 1.2 and 1.3 and no weak cipher",
          "[daemon][tls_termination]") {
    require_root();
    // The control: a server allowing TLS 1.1, NULL and anonymous ciphers is reported so.
    OpensslServer weak({.common_name = "weak.test",
                        .extra_args = {"-tls1_1", "-cipher", "ALL:eNULL:@SECLEVEL=0"}});
    const ScanResult control = sslscan(weak.port(), "weak.test");
    INFO(control.output);
    REQUIRE(control.complete);
    REQUIRE(control.enabled.count("tls1.1") == 1);
    std::size_t weak_ciphers = 0;
    for (const AcceptedCipher& cipher : control.ciphers) {
        weak_ciphers += weakness(cipher).empty() ? 0 : 1;
    }
    REQUIRE(weak_ciphers > 0);

    TerminatingSite site;
    auto daemon = start_daemon("copy", terminating_config(site));
    const ScanResult scan = sslscan(site.listen, "chat.example.com");
    INFO(scan.output << "\n" << daemon->log_tail());
    REQUIRE(scan.complete);
    CHECK(scan.enabled == std::set<std::string>{"tls1.2", "tls1.3"});
    // Each old version was tried and found off, not left out of the report.
    for (const char* old : {"ssl2", "ssl3", "tls1.0", "tls1.1"}) {
        CAPTURE(old);
        CHECK(scan.disabled.count(old) == 1);
    }
    std::set<std::string> versions_with_ciphers;
    for (const AcceptedCipher& cipher : scan.ciphers) {
        CAPTURE(cipher.version, cipher.name, cipher.bits, cipher.strength);
        CHECK(weakness(cipher) == "");
        CHECK((cipher.version == "TLSv1.2" || cipher.version == "TLSv1.3"));
        versions_with_ciphers.insert(cipher.version);
    }
    CHECK(versions_with_ciphers == std::set<std::string>{"TLSv1.2", "TLSv1.3"});
    stop_daemon(*daemon);
}
